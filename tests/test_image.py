"""The container image, built from a clean clone and run as it ships.

`scripts/build-image` makes the Dockerfile's base (debian:trixie-slim) from Debian's
packages with mmdebstrap and builds the Dockerfile with `buildah bud` (chroot
isolation, vfs storage): no Docker engine, no registry. The checks then run the
image's own entrypoint (`tini -- canary`) with `buildah run` in a working container,
as the image's USER, with its ENV and WORKDIR, and a host directory owned by 10001 as
the /var/lib/canary volume (what a Docker volume or a pod's emptyDir gives):

- the image's configuration: UID/GID 10001, exec-form entrypoint through tini, the
  HEALTHCHECK, and labels whose version is the installed distribution's own;
- `canary --version` prints the package's version; `canary db upgrade` creates the
  database in the volume; `canary config check` passes the example configuration and
  the image's own; `canary demo` promotes one canary and rolls back the bad one, and
  `canary replay --all` reproduces its decisions;
- every judge answers the example analysis as it does outside the image (the image
  carries only the SciPy subpackages canary imports, so a judge reaching for another
  one fails here);
- `canary run` (the image's CMD) serves /healthz, the image's HEALTHCHECK passes, and
  SIGTERM to tini stops it with status 0;
- nothing in the image's root filesystem outside /var/lib/canary and /tmp is writable
  by UID/GID 10001 (a process without capabilities), so it runs with a read-only root.

The build needs root and buildah (scripts/test installs Debian's packages); elsewhere
these tests are skipped with the reason, and under CI a missing buildah is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from canary.judge import JUDGES

ROOT = Path(__file__).resolve().parents[1]
UID = GID = 10001
DATA_DIR = "/var/lib/canary"
ARTIFACTS = ROOT / "test-artifacts"
#: The size budget the README records (uncompressed, as `docker images` shows it): the
#: image's size when it was last measured plus a margin for Debian's and PyPI's updates.
SIZE_LIMIT_MB = 300
#: Building takes minutes on a busy two-core machine (the base rootfs is cached).
pytestmark = pytest.mark.timeout(1800)
ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
#: buildah reads its isolation from the environment, its storage driver only from a flag.
BUILDAH = ["buildah", "--storage-driver", "vfs"]


def _run(args: list[str], timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=ENV, check=False, **kwargs
    )


def _buildah_missing() -> str | None:
    if os.geteuid() != 0:
        return "building the image needs root (buildah with chroot isolation and vfs storage)"
    for tool in ("buildah", "podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test installs it with apt-get)"
    return None


@dataclass
class Image:
    id: str
    config: dict[str, Any]
    size_mb: int
    revision: str
    container: str

    def argv(
        self, *args: str, volumes: dict[Path, str] | None = None, env: dict[str, str] | None = None
    ) -> list[str]:
        """`buildah run` of the image's entrypoint with `args` as its user, ENV and WORKDIR."""
        options = [f"--volume={host}:{inside}" for host, inside in (volumes or {}).items()]
        options += [f"--env={name}={value}" for name, value in (env or {}).items()]
        return [*BUILDAH, "run", *options, self.container, "--", *self.config["Entrypoint"], *args]

    def run(
        self,
        *args: str,
        volumes: dict[Path, str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        return _run(self.argv(*args, volumes=volumes, env=env), timeout=timeout)

    def python(self, code: str, volumes: dict[Path, str] | None = None) -> Any:
        """Run `code` with the image's Python as its user; its stdout is JSON."""
        mounts = [f"--volume={host}:{inside}" for host, inside in (volumes or {}).items()]
        result = _run([*BUILDAH, "run", *mounts, self.container, "--", "python", "-c", code])
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    missing = _buildah_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the image: {missing}")
        pytest.skip(missing)
    with tempfile.TemporaryDirectory(prefix="canary-image-") as tmp:
        clone = Path(tmp) / "src"
        cloned = _run(["git", "clone", "--quiet", "--no-local", str(ROOT), str(clone)])
        assert cloned.returncode == 0, cloned.stderr
        revision = _run(["git", "rev-parse", "HEAD"], cwd=clone).stdout.strip()
        tag = f"localhost/canary-test:{uuid.uuid4().hex[:12]}"
        built = _run(["scripts/build-image", "--tag", tag], cwd=clone, timeout=1500)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "build-image.log").write_text(built.stdout + built.stderr)
        assert built.returncode == 0, built.stdout + built.stderr[-4000:]
        image_id = built.stdout.split()[-1]
        size_mb = int(re.search(r"^size: (\d+) MB$", built.stdout, re.M).group(1))
    container = None
    try:
        inspected = json.loads(_run([*BUILDAH, "inspect", "--type", "image", image_id]).stdout)
        created = _run([*BUILDAH, "from", "--quiet", "--pull=never", image_id])
        assert created.returncode == 0, created.stderr
        container = created.stdout.strip()
        yield Image(image_id, inspected["Docker"]["config"], size_mb, revision, container)
    finally:
        if container:
            _run([*BUILDAH, "rm", container])
        _run([*BUILDAH, "rmi", "--force", image_id])


@pytest.fixture
def volume() -> Iterator[Path]:
    """A data directory for /var/lib/canary owned by 10001, as a fresh volume would be."""
    path = Path(tempfile.mkdtemp(prefix="canary-volume-", dir="/tmp"))
    os.chown(path, UID, GID)
    path.chmod(0o750)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _package_version(image: Image) -> str:
    return image.python(
        "import importlib.metadata as m, json;"
        "print(json.dumps(m.version(m.packages_distributions()['canary'][0])))"
    )


def test_the_image_is_configured_as_the_dockerfile_promises(image: Image) -> None:
    config = image.config
    assert config["User"] == f"{UID}:{GID}"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "canary"]
    assert config["Cmd"] == ["run"]
    assert config["WorkingDir"] == DATA_DIR
    assert DATA_DIR in config["Volumes"]
    assert "8080/tcp" in config["ExposedPorts"]
    env = dict(entry.split("=", 1) for entry in config["Env"])
    assert env["CANARY_DATA_DIR"] == DATA_DIR
    assert env["CANARY_CONFIG"] == "/etc/canary/config.toml"
    # The OCI image format has no health check; the docker format keeps it.
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == _package_version(image)
    assert labels["org.opencontainers.image.revision"] == image.revision
    base = re.search(r"^ARG BASE_IMAGE=(.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert labels["org.opencontainers.image.base.name"] == base.group(1)


def test_the_image_stays_small(image: Image) -> None:
    assert image.size_mb < SIZE_LIMIT_MB, f"the image is {image.size_mb} MB"


def test_canary_version_runs_as_10001_and_matches_the_package(image: Image) -> None:
    ids = image.python("import json, os; print(json.dumps([os.getuid(), os.getgid()]))")
    assert ids == [UID, GID]
    result = image.run("--version")
    assert result.returncode == 0, result.stderr
    assert _package_version(image) in result.stdout.split(), result.stdout


def test_db_upgrade_writes_the_database_into_the_volume(image: Image, volume: Path) -> None:
    result = image.run("db", "upgrade", volumes={volume: DATA_DIR})
    assert result.returncode == 0, result.stdout + result.stderr
    database = volume / "canary.db"
    assert database.is_file()
    assert (database.stat().st_uid, database.stat().st_gid) == (UID, GID)


def test_config_check_passes_the_example_and_the_image_config(image: Image, tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(ROOT / "config.example.toml", examples / "config.example.toml")
    examples.chmod(0o755)
    tmp_path.chmod(0o755)
    # The example's webhook reads its URL from this variable, which a deployment sets.
    checked = image.run(
        "config",
        "check",
        "/mnt/examples/config.example.toml",
        volumes={examples: "/mnt/examples"},
        env={"CANARY_SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/x"},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    own = image.run("config", "check", "/etc/canary/config.toml")
    assert own.returncode == 0, own.stdout + own.stderr
    broken = examples / "broken.toml"
    broken.write_text('[server]\nlisten = "nowhere"\n')
    rejected = image.run(
        "config", "check", "/mnt/examples/broken.toml", volumes={examples: "/mnt/examples"}
    )
    assert rejected.returncode == 2, rejected.stdout + rejected.stderr
    assert "server.listen" in rejected.stdout + rejected.stderr


def test_demo_promotes_the_healthy_canary_and_rolls_back_the_bad_one(
    image: Image, volume: Path
) -> None:
    result = image.run("demo", volumes={volume: DATA_DIR}, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"^checkout: promoted \(pass\)", result.stdout, re.M), result.stdout
    assert re.search(r"^payments: rolled_back \(fail\)", result.stdout, re.M), result.stdout
    reports = sorted(p.name.split("-")[0] for p in (volume / "reports").glob("*.html"))
    assert reports == ["checkout", "payments"]

    replayed = image.run("replay", "--all", "--json", volumes={volume: DATA_DIR})
    assert replayed.returncode == 0, replayed.stdout[-2000:] + replayed.stderr[-2000:]
    summary = json.loads(replayed.stdout)
    assert summary["analyses"] == 2
    [again] = [c for c in summary["configurations"] if c["name"] == "replayed"]
    assert (again["errors"], again["verdicts_changed"], again["decisions_changed"]) == (0, 0, 0)
    assert again["verdicts"] == {"pass": 1, "fail": 1}


#: What each judge needs beyond the example analysis (the threshold judge: its limits).
JUDGE_SETTINGS = {
    "sequential": [],
    "mann_whitney": [],
    "threshold": ["--set", "errors.max=0.01", "--set", "latency.max=500", "--set", "cpu.max=1"],
}


def _verdicts(answer: dict[str, Any]) -> dict[str, Any]:
    metrics = {name: (m["verdict"], m["round"]) for name, m in answer["metrics"].items()}
    return {"verdict": answer["verdict"], "round": answer["round"], "metrics": metrics}


@pytest.mark.parametrize("judge", sorted(JUDGE_SETTINGS))
def test_every_judge_answers_as_outside_the_image(image: Image, tmp_path: Path, judge: str) -> None:
    """`canary judge` in the image (Debian's NumPy and SciPy) and here give one answer."""
    assert set(JUDGE_SETTINGS) == set(JUDGES), "a judge without an image check"
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(ROOT / "examples" / "judge-analysis.json", examples / "analysis.json")
    examples.chmod(0o755)
    tmp_path.chmod(0o755)
    args = ["judge", "--judge", judge, *JUDGE_SETTINGS[judge], "--json"]
    inside = image.run(
        *args, "--input", "/mnt/examples/analysis.json", volumes={examples: "/mnt/examples"}
    )
    outside = _run(
        [sys.executable, "-m", "canary", *args, "--input", str(examples / "analysis.json")]
    )
    assert outside.returncode in (0, 1), outside.stderr
    assert inside.returncode == outside.returncode, inside.stdout[-2000:] + inside.stderr[-2000:]
    assert _verdicts(json.loads(inside.stdout)) == _verdicts(json.loads(outside.stdout))


WRITABLE = """
import json, os, stat
# Where the runtime mounts its own files (kernel file systems, /etc/hosts and the like).
skip = {"/proc", "/sys", "/dev", "/run/secrets", "/etc/hosts", "/etc/hostname",
        "/etc/resolv.conf", "/run/.containerenv"}
found = []
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
    for name in [*dirs, *files]:
        path = os.path.join(top, name)
        if path in skip or os.path.islink(path):
            continue
        if os.access(path, os.W_OK):
            found.append(path)
if os.access("/", os.W_OK):
    found.append("/")
print(json.dumps(found))
"""


def test_only_the_data_directory_and_tmp_are_writable(image: Image) -> None:
    """As 10001 (no capabilities), every path outside /var/lib/canary and /tmp is read-only."""
    writable = image.python(WRITABLE)
    outside = [
        path
        for path in writable
        if not any(path == top or path.startswith(top + "/") for top in (DATA_DIR, "/tmp"))
    ]
    assert outside == []
    assert DATA_DIR in writable and "/tmp" in writable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendant(parent: int, executable: str) -> int | None:
    """The PID of a process below `parent` whose argv[0] is `executable`."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, IndexError):
            continue
        children.setdefault(int(stat_fields[1]), []).append(int(entry.name))
    pending = list(children.get(parent, []))
    while pending:
        pid = pending.pop()
        if commands.get(pid) == executable:
            return pid
        pending += children.get(pid, [])
    return None


def _healthy(image: Image, port: int) -> bool:
    """The image's own HEALTHCHECK command, pointed at `port`, run inside the image."""
    kind, *command = image.config["Healthcheck"]["Test"]
    assert kind == "CMD"
    command = [part.replace(":8080/", f":{port}/") for part in command]
    result = _run([*BUILDAH, "run", image.container, "--", *command], timeout=60)
    return result.returncode == 0


def test_canary_run_serves_health_and_stops_on_sigterm_through_tini(
    image: Image, volume: Path
) -> None:
    """`canary run` as the image's CMD: /healthz answers, SIGTERM to PID 1 (tini) stops it."""
    port = _free_port()
    # The configuration goes into the data volume: given a second --volume, `buildah run`
    # (1.28) sometimes mounts the image's own VOLUME over the one given for it.
    shipped = (ROOT / "deploy" / "container" / "config.toml").read_text()
    assert 'listen = "0.0.0.0:8080"' in shipped
    config = volume / "config.toml"
    config.write_text(
        shipped.replace('"0.0.0.0:8080"', f'"127.0.0.1:{port}"').replace(
            "http://prometheus.istio-system:9090", "http://127.0.0.1:9"
        )
        + '\n[kubernetes]\nmode = "memory"\n'
    )
    config.chmod(0o644)
    volumes = {volume: DATA_DIR}
    env = {"CANARY_CONFIG": f"{DATA_DIR}/config.toml", "CANARY_API_TOKEN": "t"}
    migrated = image.run("db", "upgrade", volumes=volumes, env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    process = subprocess.Popen(
        image.argv(*image.config["Cmd"], volumes=volumes, env=env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "canary run served no /healthz in 120 s"
                time.sleep(0.5)
        assert _healthy(image, port)

        tini = _descendant(process.pid, "/usr/bin/tini")
        assert tini is not None, "the entrypoint's first process is tini"
        os.kill(tini, signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr, stderr[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert not _healthy(image, port)


IMPORT_ALL = """
import importlib, json, pkgutil, canary
# __main__ runs the CLI; the migration environment runs only under Alembic.
skip = {"canary.__main__", "canary.migrations.env"}
failed = {}
for module in pkgutil.walk_packages(canary.__path__, "canary."):
    if module.name not in skip:
        try:
            importlib.import_module(module.name)
        except Exception as error:
            failed[module.name] = repr(error)
print(json.dumps(failed))
"""


def test_every_canary_module_imports_in_the_image(image: Image) -> None:
    """Nothing canary imports was left out of the image (SciPy ships only what it uses)."""
    assert image.python(IMPORT_ALL) == {}
