"""The CLI's habits: global options anywhere, --version, shell completion, quiet logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from canary import __version__
from canary.logs import setup_logging


def canary(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canary", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def _tables(path: Path) -> set[str]:
    return set(sa.inspect(sa.create_engine(f"sqlite:///{path}")).get_table_names())


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    after = canary("db", "upgrade", "--database-url", f"sqlite:///{tmp_path / 'a.db'}")
    assert after.returncode == 0, after.stderr
    assert "analyses" in _tables(tmp_path / "a.db")
    before = canary(f"--database-url=sqlite:///{tmp_path / 'b.db'}", "db", "upgrade")
    assert before.returncode == 0, before.stderr
    assert "analyses" in _tables(tmp_path / "b.db")
    # after the command, --log-format json and --debug take effect as before it
    status = canary("db", "status", "--json", "--database-url", f"sqlite:///{tmp_path / 'a.db'}")
    assert '"up_to_date": true' in status.stdout
    missing = canary("history", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "nope.toml" in missing.stderr


def test_an_option_given_before_survives_the_command_s_parser(tmp_path: Path) -> None:
    """The command's copy of a global option must not reset a value given before it."""
    from canary.cli import build_parser

    args = build_parser().parse_args(["--debug", "--database-url", "sqlite://", "db", "status"])
    assert args.debug is True and args.database_url == "sqlite://"
    args = build_parser().parse_args(["db", "status", "--log-format", "json"])
    assert args.log_format == "json" and args.debug is False


def test_replay_keeps_its_own_config_option() -> None:
    from canary.cli import build_parser

    args = build_parser().parse_args(["--config", "global.toml", "replay", "--config", "x.toml"])
    assert args.config == "global.toml"
    assert args.replay_configs == ["x.toml"]


def test_version_comes_from_the_distribution_metadata() -> None:
    from importlib.metadata import version

    result = canary("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"canary {version('canary-verdict')} (canary-verdict)"
    assert __version__ == version("canary-verdict")


def _complete(shell: str, script: Path, *words: str) -> list[str]:
    """Run the completion function the way the shell's completion system calls it."""
    if shell == "bash":
        driver = (
            f"source {script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
            "COMP_CWORD=$((${#COMP_WORDS[@]}-1))\n_canary_complete\nprintf '%s\\n' "
            '"${COMPREPLY[@]}"\n'
        )
        command = ["bash", "-c", driver]
    else:  # zsh: as bashcompinit's _bash_complete does, 1-based words, CWORD = CURRENT-1
        driver = (
            f"autoload -U compinit && compinit -u\nsource {script}\n"
            f"local -a COMP_WORDS COMPREPLY\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
            "COMP_CWORD=$(( ${#COMP_WORDS} - 1 ))\n_canary_complete\nprint -l -- $COMPREPLY\n"
        )
        command = ["zsh", "-f", "-c", driver]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shell_completion(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is not installed (scripts/test installs it)")
    result = canary("completion", shell)
    assert result.returncode == 0, result.stderr
    script = tmp_path / f"canary.{shell}"
    script.write_text(result.stdout)

    def offered(*words: str) -> set[str]:
        got = _complete(shell, script, *words)
        # zsh's compadd filters by the typed prefix itself, so only bash's list is filtered
        return {w for w in got if w.startswith(words[-1])}

    assert offered("canary", "st") == {"start", "status"}
    assert {"upgrade", "status", "--database-url"} <= offered("canary", "db", "")
    assert offered("canary", "history", "--verdict", "") == {
        "pass",
        "fail",
        "inconclusive",
        "running",
    }
    assert offered("canary", "db", "upgrade", "--log-format", "") == {"text", "json"}
    assert offered("canary", "status", "--w") == {"--watch"}
    assert offered("canary", "completion", "") >= {"bash", "zsh"}


async def _busy_scheduler() -> None:
    scheduler = AsyncIOScheduler()

    async def slow() -> None:
        await asyncio.sleep(0.6)

    scheduler.add_job(slow, "interval", seconds=0.2, max_instances=1, id="sync")
    scheduler.start()
    await asyncio.sleep(1.0)
    scheduler.shutdown(wait=False)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_routine_scheduler_warnings_go_to_debug(level: str, capfd: pytest.CaptureFixture) -> None:
    """APScheduler's "skipped: maximum number of running instances" is not for users."""
    setup_logging("text", level)
    try:
        asyncio.run(_busy_scheduler())
        logging.getLogger("canary.test").warning("a warning that matters")
    finally:
        setup_logging("text", "INFO")
    err = capfd.readouterr().err
    assert "a warning that matters" in err
    skipped = [line for line in err.splitlines() if "maximum number of running instances" in line]
    if level == "INFO":
        assert skipped == []
    else:
        assert skipped and all(" debug " in line for line in skipped)


def test_status_watch_refreshes_in_place_until_ctrl_c(tmp_path: Path) -> None:
    """In a terminal, `status --watch` redraws one table; a started analysis shows up."""
    import pty
    import select
    import signal
    import time

    root = Path(__file__).resolve().parents[1]
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    config = str(root / "config.example.toml")
    assert canary("db", "upgrade", "--database-url", url).returncode == 0
    env = {**os.environ, "COLUMNS": "200", "LINES": "50", "TERM": "xterm"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: canary in a pseudo-terminal
        os.execvpe(
            sys.executable,
            [
                sys.executable,
                "-m",
                "canary",
                "status",
                "--watch",
                "--interval",
                "0.3",
                "--config",
                config,
                "--database-url",
                url,
            ],
            env,
        )
    output = b""

    def read_until(needle: bytes, timeout: float = 60) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while needle not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    break
        assert needle in output, output[-3000:]

    try:
        read_until(b"Ctrl-C to stop")
        read_until(b"idle")
        started = canary("start", "checkout", "--config", config, "--database-url", url)
        assert started.returncode == 0, started.stderr
        analysis_id = started.stdout.split()[2].encode()
        read_until(analysis_id)
        os.kill(pid, signal.SIGINT)
        read_until(b"\n", 5)
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    # in place: the cursor moves up over the previous table instead of scrolling on
    assert b"\x1b[1A" in output or b"\x1b[A" in output or b"\x1b[2K" in output
    assert output.count(b"Ctrl-C to stop") >= 2
