"""Verdict evidence in plain words: effect and interval first, bounded progress, no
raw e-values outside `--json` and the report's detail table."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from stored_analyses import judge_counts, regressing_analysis

from canary.judge import make_judge
from canary.model import MetricResult, Verdict
from canary.store.database import connect, migrate
from canary.verdict_words import describe_metric, describe_result, progress_share, raw_evidence

#: An e-value or any float in scientific notation: what people should not have to read.
RAW = re.compile(r"(?<![\w-])\d(\.\d+)?e[+-]\d+")


def test_a_failing_metric_leads_with_its_effect_and_decided_evidence() -> None:
    result = judge_counts(make_judge, failing=True).metrics["errors"]
    assert result.verdict is Verdict.FAIL
    words = describe_result(result)
    # 5% vs 1% errors: error odds about 5.2x; the interval must say so
    match = re.fullmatch(
        r"error odds (\d+\.\d)–(\d+\.\d)x baseline \(estimate (\d+\.\d)x\)", words.effect or ""
    )
    assert match, words.effect
    assert float(match.group(1)) < 5.2 < float(match.group(2))
    # the exact conditional MLE of 250/5000 vs 500/50000 per round: odds ratio 5.21
    assert match.group(3) == "5.2"
    assert words.progress[0] == "FAIL evidence 100% — decided"
    assert words.progress[1] == "PASS evidence 0%"
    assert not RAW.search(words.line() + " ".join(words.notes)), words
    # the raw numbers are still there for the detail table
    assert RAW.search(raw_evidence(result.statistics))


def test_a_passing_metric_shows_pass_progress() -> None:
    result = judge_counts(make_judge, failing=False, rounds=3).metrics["errors"]
    words = describe_result(result)
    assert words.effect and words.effect.startswith("error odds ")
    shares = [p for p in words.progress if p.startswith("PASS evidence ")]
    assert shares and re.fullmatch(r"PASS evidence (\d+)%.*", shares[0])
    assert not RAW.search(words.line())


def test_progress_is_the_log_share_of_the_threshold() -> None:
    assert progress_share(1.0, 100.0) == 0.0
    assert progress_share(0.001, 100.0) == 0.0
    assert progress_share(10.0, 100.0) == pytest.approx(0.5)
    assert progress_share(1e300, 100.0) == 1.0
    assert progress_share(None, 100.0) is None
    words = describe_metric("errors", "running", {"e_fail": 10.0, "fail_threshold": 100.0})
    assert words.progress == ["FAIL evidence 50%"]


def test_threshold_judge_progress_counts_failed_rounds() -> None:
    stats = {
        "min": 0.99,
        "max": None,
        "failure_limit": 1,
        "consecutive": False,
        "failed": 1,
        "failed_in_a_row": 1,
        "last_value": 0.95,
    }
    words = describe_metric("success", "running", stats)
    assert words.effect == "last round 0.95 (must be >= 0.99)"
    assert words.progress == ["FAIL evidence 50% (1 of 2 failed rounds)"]


@pytest.mark.parametrize(
    "statistics",
    [
        None,
        {},
        {"e_fail": "lots", "fail_threshold": None, "ci_low": "x"},
        {"per_bound": [None, {"bound": "slow"}, {"bound": 250.0}]},
        {"failure_limit": None, "last_value": "n/a"},
        {"classification": 3, "interval": "wide", "mean_ratio": math.nan},
        {"new_field_from_a_future_judge": {"nested": [1, 2]}},
    ],
)
def test_unknown_or_malformed_details_never_raise(statistics: object) -> None:
    words = describe_metric("m", "running", statistics)  # type: ignore[arg-type]
    assert words.line().startswith("m: running")


def test_judge_reasons_that_repeat_e_values_are_left_out() -> None:
    result = MetricResult(
        name="errors",
        verdict=Verdict.RUNNING,
        reasons=[
            "fail evidence 2.3e+204 (fails at 200), pass evidence 0.001 (passes at 20)",
            "no data in one arm, no evidence",
        ],
    )
    assert describe_result(result).notes == ["no data in one arm, no evidence"]


def _canary(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canary", *args], capture_output=True, text=True, timeout=120
    )


def test_show_history_and_status_speak_words_and_json_keeps_the_numbers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    migrate(connect(url))
    analysis_id = regressing_analysis(url)
    show = _canary("show", analysis_id, "--database-url", url)
    assert show.returncode == 0, show.stderr
    assert "FAIL evidence 100% — decided" in show.stdout
    assert re.search(
        r"fail at round \d+: error odds (at least )?\d+\.\d(–\d+(\.\d+)?)?x baseline",
        show.stdout,
    )
    assert not RAW.search(show.stdout), show.stdout
    history = _canary("history", "--database-url", url)
    assert "FAIL evidence 100% — decided" in history.stdout
    assert not RAW.search(history.stdout)
    config = str(Path(__file__).resolve().parents[1] / "config.example.toml")
    status = _canary("status", "--config", config, "--database-url", url)
    assert status.returncode == 0, status.stderr
    assert "FAIL evidence 100% — decided" in status.stdout and "error odds" in status.stdout
    assert not RAW.search(status.stdout)
    raw = json.loads(_canary("show", analysis_id, "--json", "--database-url", url).stdout)
    stats = [m["statistics"] for r in raw["rounds"] for m in r["metrics"].values()]
    assert any(isinstance(s.get("e_fail"), float) for s in stats)


def test_reasons_quoting_e_values_stay_out_of_the_words() -> None:
    """Any judge reason with a number in scientific notation is for --json only."""
    stats = {
        "e_fail": 1e99,
        "fail_threshold": 200.0,
        "e_fail_requests": 1e99,
        "e_fail_robust": math.sqrt(200.0),
        "round_cv": 0.12,
        "pod_cv": 0.3,
    }
    reasons = [
        "fail evidence: request-level 2.2e+99, robust 14 (FAIL needs both)",
        "a future judge's remark with 3.1e+12 in it",
        "no per-pod breakdown of the baseline",
    ]
    words = describe_metric("errors", "running", stats, reasons)
    assert words.notes == [
        "FAIL needs request-level (100%) and robust (50%) evidence; the robust one allows "
        "the baseline's spread of 12% between rounds and 30% between pods",
        "no per-pod breakdown of the baseline",
    ]


def test_interval_ends_past_the_grid_read_as_at_least_or_at_most() -> None:
    from canary.verdict_words import ratio_interval

    assert ratio_interval(4.47, 6.31) == "4.5–6.3x"
    assert ratio_interval(8.9, None) == "at least 8.9x"
    assert ratio_interval(0.0, 0.12) == "at most 0.12x"
    assert ratio_interval(0.0, None) == "anywhere (no estimate yet)"
    assert ratio_interval(None, None) is None  # no constant ratio fits
    assert ratio_interval(12.0, 25.0) == "12–25x"
