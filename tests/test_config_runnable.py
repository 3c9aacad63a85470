"""Configuration that passes its check must be able to run.

Every case is refused the same way by `canary config check FILE`, `canary run` and
`canary serve` at start: exit 2, one line per problem naming the key, before any
round, request or database file. Plus: a port in use is one line, and a failing
`serve` leaves no empty SQLite file behind.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_stack import DaemonProcess, wait_until

from canary.cli import main
from canary.store.analyses import list_analyses
from canary.store.database import connect, migrate, sessions

pytestmark = pytest.mark.timeout(60)

BASE = """
[prometheus]
url = {url}
{prometheus}
[database]
{database}
[kubernetes]
{kubernetes}

[[canary]]
name = "checkout"
namespace = "shop"
interval = {interval}
[canary.traffic]
virtual_service = "checkout"
canary = {{ host = "checkout", subset = "canary" }}
stable = {{ host = "checkout", subset = "stable" }}
[[canary.metrics]]
name = "errors"
kind = "counts"
failure_codes = {failure_codes}
[canary.arms.canary]
match = {{ destination_workload = "checkout-canary" }}
{arm_regex}
[canary.arms.baseline]
match = {{ destination_workload = "checkout-primary" }}
"""

DEFAULTS = {
    "url": '"http://127.0.0.1:9"',
    "prometheus": "",
    "database": "",
    "kubernetes": 'mode = "memory"',
    "interval": '"30s"',
    "failure_codes": '"5.."',
    "arm_regex": "",
}


NOT_UTF8 = b"\xff\xfesecret"


def _token(tmp: Path, mode: int = 0o600, data: bytes = b"secret\n") -> str:
    path = tmp / "token"
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


# name -> (what to change: a function of the temporary directory, key, message)
Case = tuple[Callable[[Path], dict[str, str]], str, str]
CASES: dict[str, Case] = {
    "interval nan": (lambda t: {"interval": "nan"}, "canary[0].interval", "finite"),
    "interval inf": (lambda t: {"interval": "inf"}, "canary[0].interval", "finite"),
    "interval 999…d": (
        lambda t: {"interval": '"' + "9" * 40 + 'd"'},
        "canary[0].interval",
        "longer than 365 days",
    ),
    "bearer_token_file missing": (
        lambda t: {"prometheus": f'bearer_token_file = "{t}/missing"'},
        "prometheus.bearer_token_file",
        "cannot read",
    ),
    "bearer_token_file world-writable": (
        lambda t: {"prometheus": f'bearer_token_file = "{_token(t, 0o666)}"'},
        "prometheus.bearer_token_file",
        "world-writable",
    ),
    "bearer_token_file not UTF-8": (
        lambda t: {"prometheus": f'bearer_token_file = "{_token(t, data=NOT_UTF8)}"'},
        "prometheus.bearer_token_file",
        "not UTF-8",
    ),
    "bearer_token_env unset": (
        lambda t: {"prometheus": 'bearer_token_env = "CANARY_TEST_UNSET_TOKEN"'},
        "prometheus.bearer_token_env",
        "CANARY_TEST_UNSET_TOKEN is not set",
    ),
    "ca_file missing": (
        lambda t: {"prometheus": f'ca_file = "{t}/ca.pem"'},
        "prometheus.ca_file",
        "cannot read",
    ),
    "templates_dir missing": (
        lambda t: {"prometheus": f'templates_dir = "{t}/queries"'},
        "prometheus.templates_dir",
        "is not a directory",
    ),
    "CRLF in a header": (
        lambda t: {"prometheus": 'headers = { "X-Scope-OrgID" = "a\\r\\nEvil: 1" }'},
        "prometheus.headers",
        "control characters",
    ),
    "a framing header": (
        lambda t: {"prometheus": 'headers = { "content-length" = "0" }'},
        "prometheus.headers",
        "content-length: this header is set by canary for each request",
    ),
    "space in the URL": (
        lambda t: {"url": '"http://prometheus .monitoring:9090"'},
        "prometheus.url",
        "without spaces",
    ),
    "lookahead in failure_codes": (
        lambda t: {"failure_codes": "'5(?!03)..'"},
        "canary[0].metrics[0].failure_codes",
        "lookaround (?!…), which Prometheus (RE2) does not support",
    ),
    "backreference in failure_codes": (
        lambda t: {"failure_codes": "'(5)\\1.'"},
        "canary[0].metrics[0].failure_codes",
        "backreference",
    ),
    "possessive quantifier in failure_codes": (
        lambda t: {"failure_codes": "'5.++'"},
        "canary[0].metrics[0].failure_codes",
        "possessive repetition",
    ),
    "a mann_whitney key on a sequential metric": (
        lambda t: {"failure_codes": '"5.."\ndirection = "increase"'},
        "canary[0].metrics[0].direction",
        "not a key of a sequential metric (a key of mann_whitney metrics)",
    ),
    "a sequential key on a threshold metric": (
        lambda t: {
            "interval": '"30s"\njudge = "threshold"',
            "failure_codes": '"5.."\nmax = 0.02\nalpha_fail = 0.01',
        },
        "canary[0].metrics[0].alpha_fail",
        "not a key of a threshold metric (a key of sequential metrics)",
    ),
    "lookbehind in an arm's match_regex": (
        lambda t: {"arm_regex": "match_regex = { pod = '(?<=x)checkout-.*' }"},
        "canary[0].arms.canary",
        "lookaround (?<=…)",
    ),
    "url_env unset": (
        lambda t: {"database": 'url_env = "CANARY_TEST_UNSET_DB"'},
        "database.url_env",
        "CANARY_TEST_UNSET_DB is not set",
    ),
    "bad database scheme": (
        lambda t: {"database": 'url = "mysql://canary@db/canary"'},
        "database.url",
        "unsupported database URL scheme 'mysql'",
    ),
    "kubeconfig missing": (
        lambda t: {"kubernetes": f'mode = "kubeconfig"\nkubeconfig = "{t}/kubeconfig"'},
        "kubernetes.kubeconfig",
        "cannot read",
    ),
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CANARY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CANARY_API_TOKEN", "a-test-token")
    monkeypatch.delenv("CANARY_DATABASE_URL", raising=False)
    monkeypatch.delenv("CANARY_TEST_UNSET_TOKEN", raising=False)
    monkeypatch.delenv("CANARY_TEST_UNSET_DB", raising=False)
    return tmp_path


def _write(tmp: Path, change: Callable[[Path], dict[str, str]]) -> Path:
    path = tmp / "canary.toml"
    path.write_text(BASE.format(**{**DEFAULTS, **change(tmp)}), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database(tmp: Path, case: str) -> list[str]:
    """A migrated database for run/serve, unless the case is about the database URL."""
    if "database" in case or "url_env" in case:
        return []
    url = f"sqlite:///{tmp / 'migrated.db'}"
    migrate(connect(url))
    return ["--database-url", url]


def test_a_valid_configuration_passes(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = _write(
        home,
        lambda t: {"prometheus": f'bearer_token_file = "{_token(t)}"', "interval": '"1s"'},
    )
    assert main(["config", "check", str(config)]) == 0, capsys.readouterr()
    # ... and runs: `canary run` carries out a started analysis's first weight on the
    # in-memory mesh and records its rounds (Prometheus unreachable: failed queries).
    url = f"sqlite:///{home / 'migrated.db'}"
    migrate(connect(url))
    assert main(["--config", str(config), "--database-url", url, "start", "checkout"]) == 0
    capsys.readouterr()

    def progress() -> tuple[list[str], int]:
        with sessions(connect(url))() as session:
            (analysis,) = list_analyses(session)
            return [a.state for a in analysis.actions], len(analysis.rounds)

    daemon = DaemonProcess(config, url, home / "daemon.log")
    try:
        wait_until(
            lambda: progress()[1] >= 2 or daemon.process.poll() is not None, 30, what="rounds"
        )
        assert daemon.process.poll() is None, daemon.log()
        assert progress()[0] == ["done"], daemon.log()
    finally:
        assert daemon.terminate() == 0, daemon.log()
    # --offline checks the file alone (a configuration that runs elsewhere)
    elsewhere = _write(home, lambda t: {"prometheus": 'bearer_token_file = "/run/secrets/t"'})
    assert main(["config", "check", str(elsewhere)]) == 2
    assert main(["config", "check", "--offline", str(elsewhere)]) == 0, capsys.readouterr()


@pytest.mark.parametrize("case", list(CASES))
def test_config_check_run_and_serve_refuse_it_naming_the_key(case: str, home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    change, key, message = CASES[case]
    config = str(_write(home, change))
    database = _database(home, case)
    listen = f"127.0.0.1:{_free_port()}"
    for argv in (
        ["config", "check", config],
        ["--config", config, *database, "run", "--listen", listen],
        ["--config", config, *database, "serve", "--listen", listen],
    ):
        code = main(argv)
        captured = capsys.readouterr()
        output = captured.out + captured.err
        assert code == 2, (argv, output)
        line = next((x for x in output.splitlines() if key in x), None)
        assert line is not None and message in line, (argv, output)
        assert "Traceback" not in output
    assert not (home / "data" / "canary.db").exists()


INHERITED = """
[prometheus]
url = "http://127.0.0.1:9"
[kubernetes]
mode = "memory"
[defaults]
judge = "{defaults_judge}"
[[defaults.metrics]]
name = "errors"
max = 0.01

[[canary]]
name = "checkout"
namespace = "shop"
judge = "threshold"
[canary.traffic]
virtual_service = "checkout"
canary = {{ host = "checkout", subset = "canary" }}
stable = {{ host = "checkout", subset = "stable" }}
[canary.arms.canary]
match = {{ destination_workload = "checkout-canary" }}
[canary.arms.baseline]
match = {{ destination_workload = "checkout-primary" }}
"""


def test_defaults_metrics_of_the_inheriting_canaries_judge_run(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    # Every canary is a threshold one, [defaults] keeps the default judge: `max` is the
    # canaries' key, so the file checks and the daemon starts.
    config = home / "canary.toml"
    config.write_text(INHERITED.format(defaults_judge="sequential"), encoding="utf-8")
    assert main(["config", "check", str(config)]) == 0, capsys.readouterr()
    capsys.readouterr()
    url = f"sqlite:///{home / 'migrated.db'}"
    migrate(connect(url))
    daemon = DaemonProcess(config, url, home / "daemon.log")
    try:
        wait_until(lambda: "started" in daemon.log() or daemon.process.poll() is not None, 30)
        assert daemon.process.poll() is None, daemon.log()
    finally:
        assert daemon.terminate() == 0, daemon.log()
    # A canary of another judge inheriting them: refused where the key is written.
    config.write_text(
        INHERITED.format(defaults_judge="sequential").replace('"threshold"', '"mann_whitney"'),
        encoding="utf-8",
    )
    for argv in (["config", "check", str(config)], ["--config", str(config), "run"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        err = captured.out + captured.err
        assert "defaults.metrics[0].max: not a key of a mann_whitney metric" in err, err
        assert "canary[0] inherits it (judge = 'mann_whitney')" in err


def test_a_non_utf8_configuration_file(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = home / "canary.toml"
    config.write_bytes(BASE.format(**DEFAULTS).replace("checkout", "caf\xe9").encode("latin-1"))
    for argv in (
        ["config", "check", str(config)],
        ["--config", str(config), "run"],
        ["--config", str(config), "serve"],
    ):
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 2, argv
        assert "not UTF-8 text" in captured.out + captured.err
        assert "internal error" not in captured.err


def test_a_port_in_use_is_one_line(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = str(_write(home, lambda t: {}))
    url = f"sqlite:///{home / 'migrated.db'}"
    migrate(connect(url))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        for command in ("run", "serve"):
            code = main(["--config", config, "--database-url", url, command, "--listen", listen])
            err = capsys.readouterr().err
            assert code == 2, err
            assert err.strip().splitlines() == [
                f"canary: error: server.listen {listen}: cannot listen: Address already in use"
            ]


def test_a_failing_serve_leaves_no_empty_sqlite_file(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = str(_write(home, lambda t: {}))
    database = home / "data" / "canary.db"
    code = main(["--config", config, "serve", "--listen", f"127.0.0.1:{_free_port()}"])
    err = capsys.readouterr().err
    assert code == 3 and "run `canary db upgrade` first" in err
    assert not database.exists()
    # and `canary db upgrade` then makes it, after which serve gets past the schema
    assert main(["--config", config, "db", "upgrade"]) == 0
    assert database.exists() and os.stat(database).st_size > 0
    assert stat.S_ISREG(os.stat(database).st_mode)
