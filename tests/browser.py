"""Headless Debian Chromium for page tests: the DOM after load, console messages, screenshots."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]? (.*)")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@dataclass
class Page:
    dom: str
    console: list[str]


def binary() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("chromium is not installed; scripts/test installs it (apt chromium)")
    return path


def _run(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=90,
        )


def load(url: str) -> Page:
    """The DOM after the page loaded, and every console message it logged."""
    result = _run(url, "--enable-logging=stderr", "--v=0", "--dump-dom")
    console = [m.group(1) for m in CONSOLE.finditer(result.stderr)]
    return Page(dom=result.stdout, console=console)


def screenshot(url: str, name: str, size: str = "1100,2400") -> Path:
    """A PNG of the page saved under test-artifacts/ (kept after the run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    _run(url, f"--screenshot={path}", f"--window-size={size}")
    if not path.exists() or path.stat().st_size == 0:
        raise AssertionError(f"chromium wrote no screenshot for {url}")
    return path
