"""Kayenta's 0-100 canary score from metric classifications (`WeightedSumScorer`).

- Group score = 100 * Pass / (Pass + High + Low + NodataFailMetric) over the group's
  metrics; Nodata and Error metrics are left out. A group with none of those four
  labels has no data: its group score is 0 but it counts as 100 in the summary.
- Summary = sum of group score * weight / 100. Groups named in `group_weights` get
  their weight; the others share what is left of 100 equally. Rounded to 2 decimals.
- Any *critical* metric that is not Pass makes the summary 0; so does Nodata on 50% or
  more of the metrics.

Source: spinnaker/kayenta `kayenta-judge/.../scorers/WeightedSumScorer.scala` and its
`ScorerSuite` (Apache-2.0); no code is copied.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from canary.judge.kayenta import Classification

__all__ = ["NODATA_THRESHOLD", "ScoreResult", "ScoredMetric", "score"]

#: Percentage of Nodata metrics at which the score is 0.
NODATA_THRESHOLD = 50.0


@dataclass(frozen=True, slots=True)
class ScoredMetric:
    """What the scorer needs from one metric."""

    name: str
    classification: Classification
    group: str
    critical: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """The summary score, group scores and, when the score was forced to 0, why."""

    score: float
    group_scores: Mapping[str, float] = field(default_factory=dict)
    reason: str | None = None
    critical_failures: Sequence[str] = ()


def _round2(value: float) -> float:
    """Round half up to 2 decimals (Commons Math `Precision.round`)."""
    return math.floor(value * 100.0 + 0.5) / 100.0


def score(metrics: Sequence[ScoredMetric], group_weights: Mapping[str, float]) -> ScoreResult:
    """Kayenta's weighted-sum score of `metrics` (see the module docstring)."""
    by_group: dict[str, list[Classification]] = {}
    for metric in metrics:
        by_group.setdefault(metric.group, []).append(metric.classification)
    group_scores: dict[str, float] = {}
    no_data: set[str] = set()
    for group, labels in by_group.items():
        counts = Counter(labels)
        judged = (
            counts[Classification.PASS]
            + counts[Classification.HIGH]
            + counts[Classification.LOW]
            + counts[Classification.NODATA_FAIL_METRIC]
        )
        if judged == 0:
            no_data.add(group)
            group_scores[group] = 0.0
        else:
            group_scores[group] = 100.0 * counts[Classification.PASS] / judged

    critical = [m for m in metrics if m.critical and m.classification is not Classification.PASS]
    if critical:
        first = critical[0]
        why = first.reason or f"{first.name} was classified as {first.classification.value}"
        return ScoreResult(
            0.0, group_scores, f"Canary failed: {why}", tuple(m.name for m in critical)
        )
    nodata = sum(1 for m in metrics if m.classification is Classification.NODATA)
    if metrics and 100.0 * nodata / len(metrics) >= NODATA_THRESHOLD:
        return ScoreResult(
            0.0,
            group_scores,
            f"Canary failed: {NODATA_THRESHOLD:g}% or more metrics returned NODATA "
            f"({nodata} of {len(metrics)})",
        )

    unweighted = [g for g in group_scores if g not in group_weights]
    rest = (100.0 - sum(group_weights.values())) / len(unweighted) if unweighted else 0.0
    summary = 0.0
    for group, group_score in group_scores.items():
        effective = 100.0 if group in no_data else group_score
        summary += effective * group_weights.get(group, rest) / 100.0
    return ScoreResult(_round2(summary), group_scores)
