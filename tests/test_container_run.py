"""`canary run` the way the container runs it.

The image runs canary as UID/GID 10001 on a read-only root filesystem with HOME
unwritable and only /var/lib/canary (CANARY_DATA_DIR) and /tmp writable.
tests/test_image.py builds and runs the image itself; this test builds the same
conditions around the installed package, with a read-only root filesystem mounted as
such, which `buildah run` cannot give:

- as root (CI): a private mount namespace (`unshare --mount`) in which the root
  filesystem is remounted read-only (so are the package, the interpreter and HOME),
  /tmp stays writable and the data directory belongs to 10001; the process then drops
  to 10001:10001 with no capabilities and no_new_privs (`setpriv`), as
  `allowPrivilegeEscalation: false` and `capabilities: drop: [ALL]` do. Directories
  that 10001 could not even traverse (a 0700 /root holding the interpreter) are
  replaced by an empty read-only tmpfs that shows only what the process needs;
- as any other user, the process simply runs as that (non-root) user with an
  unwritable HOME.

Like the Deployment, `canary db upgrade` (the init container) runs first; then
`canary run` must serve /healthz and exit with status 0 within the Deployment's
termination grace period after SIGTERM.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dockerfile_helpers import dockerfile_stages, instructions

import canary

ROOT = Path(__file__).resolve().parents[1]
UID = GID = 10001
DEPLOYMENT = ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml"


def _grace_period() -> float:
    """The Deployment's terminationGracePeriodSeconds: SIGTERM to SIGKILL in the cluster."""
    return float(
        yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _untraversable_ancestors(paths: list[Path]) -> dict[Path, set[str]]:
    """Directories others may not enter (e.g. a 0700 /root), with the children needed."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        for child in [path, *path.parents][::-1][1:]:
            parent = child.parent
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                blocked.setdefault(parent, set()).add(child.name)
    return blocked


def _sandbox_script(command: list[str], env: dict[str, str]) -> str:
    """A shell script for `unshare --mount`: read-only root, writable /tmp, drop to 10001."""
    needed = [
        Path(sys.prefix).resolve(),
        Path(sys.base_prefix).resolve(),
        Path(canary.__file__).resolve().parents[1],
        Path(sys.executable).resolve(),
    ]
    lines = ["set -eu", "stash=$(mktemp -d)"]
    for number, (directory, children) in enumerate(
        sorted(_untraversable_ancestors(needed).items())
    ):
        for child in sorted(children):
            source = shlex.quote(str(directory / child))
            lines.append(f"mkdir -p $stash/{number}/{shlex.quote(child)}")
            lines.append(f"mount --rbind {source} $stash/{number}/{shlex.quote(child)}")
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(directory))}")
        for child in sorted(children):
            target = shlex.quote(str(directory / child))
            lines.append(f"mkdir {target}")
            lines.append(f"mount --move $stash/{number}/{shlex.quote(child)} {target}")
            lines.append(f"mount -o remount,ro,bind {target}")
            lines.append(f"rmdir $stash/{number}/{shlex.quote(child)}")
        lines.append(f"rmdir $stash/{number}")
        lines.append(f"mount -o remount,ro,bind {shlex.quote(str(directory))}")
    lines += [
        "rmdir $stash",
        "mount --rbind /tmp /tmp",  # /tmp stays writable, as the emptyDir in the pod
        "mount -o remount,ro,bind /",
        "test -w / && { echo 'root filesystem still writable' >&2; exit 97; } || true",
        "exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs "
        "--inh-caps=-all --bounding-set=-all -- env -i {env} {command}".format(
            uid=UID,
            gid=GID,
            env=" ".join(shlex.quote(f"{k}={v}") for k, v in env.items()),
            command=" ".join(shlex.quote(c) for c in command),
        ),
    ]
    return "\n".join(lines)


class Container:
    """Runs canary commands under the container's conditions (see the module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.as_root = os.geteuid() == 0
        tmp_path = workdir
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(mode=0o700)
        self.config = tmp_path / "etc" / "config.toml"
        self.config.parent.mkdir()
        self.port = _free_port()
        self.config.write_text(
            f"""
[server]
listen = "127.0.0.1:{self.port}"
api_token_env = "CANARY_API_TOKEN"

[database]
url_env = "CANARY_DATABASE_URL"

[prometheus]
url = "http://127.0.0.1:9"
timeout = "1s"

[kubernetes]
mode = "memory"
"""
        )
        self.config.chmod(0o444)
        self.config.parent.chmod(0o555)
        if self.as_root:
            os.chown(self.data_dir, UID, GID)
        scripts = sysconfig.get_path("scripts")
        self.env = {
            "PATH": f"{scripts}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/nonexistent",
            "TMPDIR": "/tmp",
            "CANARY_CONFIG": str(self.config),
            "CANARY_DATA_DIR": str(self.data_dir),
            "CANARY_API_TOKEN": "test-token",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.canary = str(Path(scripts) / "canary")

    def popen(self, *args: str, program: str | None = None) -> subprocess.Popen[str]:
        command = [program or self.canary, *args]
        if self.as_root:
            script = _sandbox_script(command, self.env)
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
            env = None
        else:
            argv, env = command, self.env
        return subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def run(self, *args: str, program: str | None = None) -> subprocess.CompletedProcess[str]:
        process = self.popen(*args, program=program)
        stdout, stderr = process.communicate(timeout=120)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _healthcheck(port: int) -> list[str]:
    """The Dockerfile's HEALTHCHECK command (exec form), with `port` for 8080."""
    (healthcheck,) = instructions(
        dockerfile_stages((ROOT / "Dockerfile").read_text())[-1], "HEALTHCHECK"
    )
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python"
    return [sys.executable, *(part.replace(":8080/", f":{port}/") for part in command[1:])]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status, response.read()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory under /tmp that UID 10001 can traverse (pytest's own are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="canary-container-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for directory in (path, *path.rglob("*")):
            if directory.is_dir():
                directory.chmod(0o755)
        shutil.rmtree(path)


PROBE = """
import json, os, sys, tempfile
from pathlib import Path
import canary

def writable(directory):
    try:
        with tempfile.NamedTemporaryFile(dir=directory):
            return True
    except OSError:
        return False

print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "package": writable(Path(canary.__file__).parent),
    "prefix": writable(sys.prefix),
    "home": writable(os.environ["HOME"]) or writable("/"),
    "data": writable(os.environ["CANARY_DATA_DIR"]),
    "tmp": writable("/tmp"),
}))
"""


def test_the_sandbox_is_what_the_container_gives(workdir: Path) -> None:
    """Only the data directory and /tmp are writable; the process is not root."""
    container = Container(workdir)
    probe = container.run("-c", PROBE, program=sys.executable)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["uid"] != 0 and found["gid"] != 0
    assert found["data"] and found["tmp"]
    assert not found["home"]
    if container.as_root:
        assert (found["uid"], found["gid"]) == (UID, GID)
        assert not found["package"] and not found["prefix"]


def test_canary_run_as_the_container_does(workdir: Path) -> None:
    container = Container(workdir)

    # The init container: create the schema in the data directory.
    migrated = container.run("db", "upgrade")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert (container.data_dir / "canary.db").is_file()

    process = container.popen("--log-format", "json", "run")
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"canary run exited with {process.returncode}: {process.stderr.read()}")
            try:
                status, body = _get(f"http://127.0.0.1:{container.port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("canary run did not serve /healthz within 60 s")
                time.sleep(0.2)
        assert status == 200, body
        # The image's HEALTHCHECK command, pointed at this port, agrees.
        assert (
            subprocess.run(_healthcheck(container.port), capture_output=True, timeout=30).returncode
            == 0
        )

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=_grace_period())
        except subprocess.TimeoutExpired:
            pytest.fail(f"canary run ignored SIGTERM for the whole {_grace_period():.0f} s grace")
        stopped_after = time.monotonic() - started
        stderr = process.stderr.read()
        assert returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        print(f"canary run stopped {stopped_after:.2f} s after SIGTERM")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert (
        subprocess.run(_healthcheck(container.port), capture_output=True, timeout=30).returncode
        != 0
    )

    # Nothing but the data directory (and /tmp) was written; HOME was never created.
    assert not Path("/nonexistent").exists()
    if container.as_root:
        owned = {p.relative_to(container.data_dir) for p in container.data_dir.rglob("*")}
        assert Path("canary.db") in owned
        assert all(p.stat().st_uid == UID for p in container.data_dir.rglob("*")), (
            "everything in the data directory belongs to 10001"
        )
