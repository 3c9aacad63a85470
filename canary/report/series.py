"""What the report plots, extracted from stored rounds (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from canary.judge.round_values import bucket_quantile
from canary.model import Counts, Histogram, stored_observation
from canary.store.tables import Analysis, Round
from canary.verdict_words import round_progress


@dataclass(frozen=True)
class MetricSeries:
    """Per-round points of one metric: x is seconds since the analysis started."""

    name: str
    kind: str  # counts | histogram | value | none
    arms: dict[str, list[tuple[float, float | None]]]  # "canary p99" -> points
    unit: str
    fail_progress: list[tuple[float, float | None]]  # share of the way to FAIL, 0-100%
    pass_progress: list[tuple[float, float | None]]
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
    fail: list[tuple[float, float | None]] = []
    passing: list[tuple[float, float | None]] = []
    verdicts = []
    for row in rounds:
        x = seconds(analysis, row)
        for observation in row.observations:
            if observation.metric != name:
                continue
            delta = observation.delta if isinstance(observation.delta, dict) else {}
            try:
                read = stored_observation(observation.delta)
            except ValueError:
                read = None  # unreadable: a gap here, the reason in the round table
            if "total" in delta:
                kind, unit = "counts", "success rate"
                rate = None
                if isinstance(read, Counts) and read.total:
                    rate = 1 - read.failed / read.total
                arms.setdefault(f"{observation.arm}", []).append((x, rate))
            elif "buckets" in delta:
                kind, unit = "histogram", "latency (ms)"
                for q in (0.5, 0.99):
                    # For display only: the judges never test interpolated quantiles.
                    value = bucket_quantile(q, read) if isinstance(read, Histogram) else math.nan
                    arms.setdefault(f"{observation.arm} p{int(q * 100)}", []).append(
                        (x, None if math.isnan(value) else value)
                    )
            else:
                kind, unit = "value", "value"
                arms.setdefault(observation.arm, []).append(
                    (x, read if isinstance(read, float) and math.isfinite(read) else None)
                )
        for result in row.results:
            if result.metric != name:
                continue
            verdicts.append(result.verdict)
            to_fail, to_pass = round_progress(result.evidence, result.statistics)
            if to_fail is not None or to_pass is not None:
                fail.append((x, None if to_fail is None else 100 * to_fail))
                passing.append((x, None if to_pass is None else 100 * to_pass))
    return MetricSeries(name, kind, arms, unit, fail, passing, verdicts)
