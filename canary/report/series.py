"""What the report plots, extracted from stored rounds (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from canary.judge.round_values import bucket_quantile
from canary.model import observation_from_json
from canary.store.tables import Analysis, Round


@dataclass(frozen=True)
class MetricSeries:
    """Per-round points of one metric: x is seconds since the analysis started."""

    name: str
    kind: str  # counts | histogram | value | none
    arms: dict[str, list[tuple[float, float | None]]]  # "canary p99" -> points
    unit: str
    log_e_fail: list[tuple[float, float | None]]
    log_e_pass: list[tuple[float, float | None]]
    fail_threshold: float | None
    pass_threshold: float | None
    verdicts: list[str]


def judged_rounds(analysis: Analysis) -> list[Round]:
    """Rounds after the warm-up (index 0 only takes the counter snapshot)."""
    return [r for r in analysis.rounds if r.index >= 1]


def seconds(analysis: Analysis, row: Round) -> float:
    return (row.window_end - analysis.started_at).total_seconds()


def metric_series(analysis: Analysis) -> list[MetricSeries]:
    rounds = judged_rounds(analysis)
    names: list[str] = []
    for row in rounds:
        for observation in row.observations:
            if observation.metric not in names:
                names.append(observation.metric)
        for result in row.results:
            if result.metric not in names:
                names.append(result.metric)
    return [_one_metric(analysis, rounds, name) for name in names]


def _one_metric(analysis: Analysis, rounds: list[Round], name: str) -> MetricSeries:
    kind, unit = "none", ""
    arms: dict[str, list[tuple[float, float | None]]] = {}
    log_fail: list[tuple[float, float | None]] = []
    log_pass: list[tuple[float, float | None]] = []
    fail_threshold = pass_threshold = None
    verdicts = []
    for row in rounds:
        x = seconds(analysis, row)
        for observation in row.observations:
            if observation.metric != name:
                continue
            delta = observation.delta or {}
            if "total" in delta:
                kind, unit = "counts", "success rate"
                total, failed = delta["total"], delta["failed"]
                rate = 1 - failed / total if total else None
                arms.setdefault(f"{observation.arm}", []).append((x, rate))
            elif "buckets" in delta:
                kind, unit = "histogram", "latency (ms)"
                histogram = observation_from_json(delta)
                for q in (0.5, 0.99):
                    # For display only: the judges never test interpolated quantiles.
                    value = bucket_quantile(q, histogram)
                    arms.setdefault(f"{observation.arm} p{int(q * 100)}", []).append(
                        (x, None if math.isnan(value) else value)
                    )
            else:
                kind, unit = "value", "value"
                value = delta.get("value")
                arms.setdefault(observation.arm, []).append(
                    (x, float(value) if isinstance(value, int | float) else None)
                )
        for result in row.results:
            if result.metric != name:
                continue
            verdicts.append(result.verdict)
            evidence, stats = result.evidence or {}, result.statistics or {}
            if "log_e_fail" in evidence or "log_e_pass" in evidence:
                log_fail.append((x, _log10(evidence.get("log_e_fail"))))
                log_pass.append((x, _log10(evidence.get("log_e_pass"))))
            if isinstance(stats.get("fail_threshold"), int | float):
                fail_threshold = math.log10(stats["fail_threshold"])
            if isinstance(stats.get("pass_threshold"), int | float):
                pass_threshold = math.log10(stats["pass_threshold"])
    return MetricSeries(
        name, kind, arms, unit, log_fail, log_pass, fail_threshold, pass_threshold, verdicts
    )


def _log10(natural_log: Any) -> float | None:
    if not isinstance(natural_log, int | float) or not math.isfinite(natural_log):
        return None
    return natural_log / math.log(10)
