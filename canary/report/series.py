"""What the report plots, extracted from stored rounds (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def quantile_from_buckets(bounds: Sequence[Any], buckets: Sequence[int], q: float) -> float | None:
    """Linear interpolation inside the bucket, as PromQL's histogram_quantile does.

    For display only: the judges never use interpolated quantiles (DESIGN §4.1).
    """
    total = buckets[-1] if buckets else 0
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0
    for bound, count in zip(bounds, buckets, strict=True):
        upper = math.inf if bound in ("+Inf", math.inf) else float(bound)
        if count >= rank:
            if math.isinf(upper):
                return previous_bound  # as histogram_quantile: the highest finite bound
            width = count - previous_count
            fraction = (rank - previous_count) / width if width else 1.0
            return previous_bound + (upper - previous_bound) * fraction
        previous_bound, previous_count = upper, count
    return previous_bound


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
                for q in (0.5, 0.99):
                    value = quantile_from_buckets(delta["bounds"], delta["buckets"], q)
                    arms.setdefault(f"{observation.arm} p{int(q * 100)}", []).append((x, value))
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
