"""The distribution `canary-verdict`: its sdist and wheel build, install into a fresh
virtual environment and run, with the version taken from the package metadata."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "canary-verdict"


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build`: the sdist, then the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("artifact", ["wheel", "sdist"])
def test_artifact_installs_in_a_fresh_venv_and_runs(
    artifact: str, dist: Path, tmp_path: Path
) -> None:
    pattern = {"wheel": "canary_verdict-*-py3-none-any.whl", "sdist": "canary_verdict-*.tar.gz"}
    found = sorted(dist.glob(pattern[artifact]))
    assert len(found) == 1, sorted(p.name for p in dist.iterdir())
    venv = tmp_path / "venv"
    # Dependencies from the interpreter's site-packages (fast, offline); the package
    # itself only from the artifact (--no-deps, and checked below by its location).
    _run(sys._base_executable, "-m", "venv", "--system-site-packages", venv)
    python = venv / "bin" / "python"
    # ... and from this test environment's own site-packages when it is a venv (the
    # build backend an sdist needs). A path in a .pth file is appended after the new
    # venv's site-packages, so the installed artifact still comes first.
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(purelib.stdout.strip(), "test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", found[0])
    where = _run(
        python,
        "-c",
        "import canary, importlib.metadata as m; print(canary.__file__); "
        f"print(m.version('{NAME}'))",
        cwd=tmp_path,
    ).stdout.split()
    assert where[0].startswith(str(venv)), where
    assert where[1] == _version()
    version = _run(venv / "bin" / "canary", "--version", cwd=tmp_path).stdout.strip()
    assert version == f"canary {_version()} ({NAME})"
    demo = _run(venv / "bin" / "canary", "demo", "--help", cwd=tmp_path).stdout
    assert "simulated mesh" in demo
    # the queries and migrations ship inside the package
    packaged = _run(
        python,
        "-c",
        "import importlib.resources as r; print(sorted(p.name for p in "
        "r.files('canary.queries').iterdir() if p.name.endswith('.promql'))[:1]); "
        "print(r.files('canary.migrations').joinpath('env.py').is_file())",
        cwd=tmp_path,
    ).stdout.split("\n")
    assert packaged[0] != "[]" and packaged[1] == "True", packaged


def test_the_readme_installs_the_distribution_by_its_name() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"pip install {NAME}" in readme
    assert "pip install canary\n" not in readme and "pip install canary " not in readme
