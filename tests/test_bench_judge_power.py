"""The power benchmark keeps working: a `--quick` run prints a row per scenario and judge."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "judge_power.py"


def test_quick_run_prints_the_tables(capsys):
    spec = importlib.util.spec_from_file_location("judge_power", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["judge_power"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["judge_power"]
    assert module.main(["--quick", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    judges = {"sequential", "mann_whitney", "flagger", "z_test", "oracle_sprt"}
    for scenario in module.scenarios():
        seen = {row.split(" | ")[1] for row in rows if row.startswith(f"| {scenario.name} |")}
        assert judges <= seen, scenario.name
    # the request-level process alone, for comparison on the heterogeneous nulls
    assert "| het: Beta rates CV 99% | sequential-requests |" in out
    assert "| ladder: errors 1% -> 100%, 1000/arm | sequential |" in out
    assert "Judge CPU at 10,000 requests per arm per round" in out
