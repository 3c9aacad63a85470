"""`canary demo`: the real daemon on a simulated mesh promotes one canary, rolls back one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import browser


def test_demo_promotes_the_healthy_canary_and_rolls_back_the_regression(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "canary", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^checkout: promoted \(pass\)", result.stdout, re.M), result.stdout
    assert re.search(r"^payments: rolled_back \(fail\)", result.stdout, re.M), result.stdout
    # The live table speaks plain words: effect with interval, bounded progress.
    assert re.search(
        r"errors: fail — error odds (at least )?\d+\.\d(–\d+(\.\d+)?)?x baseline",
        result.stdout,
    )
    assert "FAIL evidence 100% — decided" in result.stdout
    # the summary says why in the same words
    assert re.search(
        r"^payments: rolled_back \(fail\) .* — errors: error odds ", result.stdout, re.M
    )
    assert "PASS evidence 100% — decided" in result.stdout
    assert not re.search(r"(?<![\w-])\d(\.\d+)?e[+-]\d+", result.stdout), result.stdout
    # Only the live table and the summary: no log lines, no library warnings.
    assert result.stderr == "", result.stderr[-2000:]
    reports = {p.name.split("-")[0]: p for p in (tmp_path / "reports").glob("*.html")}
    assert set(reports) == {"checkout", "payments"}

    page = browser.load(reports["payments"].as_uri())
    assert page.console == []
    headline = re.search(r'<div class="headline"[^>]*>(.*?)</div>', page.dom).group(1)
    assert re.match(r"Rolled back at round \d+ \(t\+\d+s, canary weight \d+%\): failed", headline)
    assert page.dom.count('<svg class="chart evidence"') == 2
    browser.screenshot(reports["payments"].as_uri(), "demo-payments-rolled-back.png")
    promoted = browser.load(reports["checkout"].as_uri())
    assert promoted.console == []
    assert "Promoted at round" in promoted.dom


def test_demo_on_gateway_api_moves_http_route_weights_through_the_router(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "canary",
            "demo",
            "--mesh",
            "gateway-api",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == "", result.stderr[-2000:]
    assert re.search(r"^checkout: promoted \(pass\)", result.stdout, re.M), result.stdout
    assert re.search(r"^payments: rolled_back \(fail\)", result.stdout, re.M), result.stdout
    # the weights as read back from each HTTPRoute the router patched
    route = (
        r"  traffic: httproutes\.gateway\.networking\.k8s\.io/{} in namespace demo, route primary"
    )
    assert re.search(route.format("checkout") + ": canary 100%, stable 0%$", result.stdout, re.M)
    assert re.search(route.format("payments") + ": canary 0%, stable 100%$", result.stdout, re.M)
