"""One number per arm per round, for the judges that compare per-round values.

The `mann_whitney` and `threshold` judges work on one value per arm and round (what
Kayenta compares per interval, and what an Argo / Flagger query returns):

- ``value`` metrics: the observation itself (a float; None or NaN is "no data");
- ``counts`` metrics: the error ratio failed/total (`mann_whitney`) or the success
  rate 1 - failed/total (`threshold`); a round without requests has no value;
- ``histogram`` metrics: the mean estimated from the buckets, or — when the metric's
  `quantiles` lists exactly one quantile q — the q-quantile interpolated inside its
  bucket exactly as Prometheus's ``histogram_quantile`` does. A round without
  observations has no value.

The bucket mean puts each bucket's count at its midpoint (the lowest bucket spans
[0, bound] when its bound is positive) and the +Inf bucket at the last finite bound,
so it underestimates when observations exceed the last finite bound.
"""

from __future__ import annotations

import math
from typing import Literal

from canary.config import MetricBase
from canary.model import Counts, Histogram, MetricKind, Observation

__all__ = [
    "bucket_mean",
    "bucket_quantile",
    "histogram_quantile_of",
    "round_value",
    "value_description",
]

CountsAs = Literal["error_ratio", "success_rate"]


def bucket_mean(histogram: Histogram) -> float:
    """Mean of a bucketed distribution (midpoint rule; see module docstring). NaN if empty."""
    total = histogram.total
    if total <= 0:
        return math.nan
    weighted = 0.0
    previous_bound, previous_count = 0.0, 0
    for index, (bound, cumulative) in enumerate(
        zip(histogram.bounds, histogram.buckets, strict=True)
    ):
        count = cumulative - previous_count
        if math.isinf(bound):
            point = previous_bound if index > 0 else 0.0
        elif index == 0:
            point = bound / 2.0 if bound > 0 else bound
        else:
            point = (previous_bound + bound) / 2.0
        weighted += count * point
        previous_bound, previous_count = bound, cumulative
    return weighted / total


def bucket_quantile(q: float, histogram: Histogram) -> float:
    """Prometheus ``histogram_quantile(q, ...)`` on one histogram. NaN if empty.

    Algorithm of Prometheus 2.x `promql/quantile.go` (bucketQuantile): rank = q *
    total; the first bucket whose cumulative count reaches the rank; linear
    interpolation inside it (lower edge 0 for the first bucket when its bound is
    positive); a rank inside the +Inf bucket gives the last finite bound.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bounds, counts = histogram.bounds, histogram.buckets
    if len(bounds) < 2 or counts[-1] == 0:
        return math.nan
    observations = float(counts[-1])
    rank = q * observations
    # First finite bucket whose cumulative count reaches the rank; len-1 means +Inf.
    b = next((i for i in range(len(bounds) - 1) if counts[i] >= rank), len(bounds) - 1)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if b == 0 else bounds[b - 1]
    end = bounds[b]
    count = float(counts[b])
    if b > 0:
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)


def histogram_quantile_of(metric: MetricBase) -> float | None:
    """The quantile a histogram metric is reduced to per round (None: the mean).

    Raises ValueError when `quantiles` lists more than one value or one outside (0, 1).
    """
    if not metric.quantiles:
        return None
    if len(metric.quantiles) != 1:
        raise ValueError(
            f"metric {metric.name!r}: quantiles must list exactly one quantile for the "
            f"per-round value (got {metric.quantiles})"
        )
    q = float(metric.quantiles[0])
    if not 0.0 < q < 1.0:
        raise ValueError(f"metric {metric.name!r}: quantiles[0] must be in (0, 1), got {q}")
    return q


def value_description(
    kind: MetricKind, *, counts_as: CountsAs, quantile: float | None = None
) -> str:
    """How `round_value` reduces a metric of `kind` to one number, in words."""
    if kind is MetricKind.COUNTS:
        if counts_as == "error_ratio":
            return "error ratio failed/total"
        return "success rate 1 - failed/total"
    if kind is MetricKind.HISTOGRAM:
        if quantile is None:
            return "mean estimated from buckets"
        return f"p{quantile * 100:g} interpolated in buckets (histogram_quantile)"
    return "value"


def round_value(
    observation: Observation,
    metric: MetricBase,
    *,
    counts_as: CountsAs,
    quantile: float | None = None,
    where: str = "",
) -> float:
    """The per-round value of `observation` for `metric`; NaN means no data.

    Raises ValueError (naming `where`, e.g. "round 3, canary") when the observation
    does not match the metric's kind.
    """
    if observation is None:
        return math.nan
    place = f" ({where})" if where else ""
    if metric.kind is MetricKind.VALUE:
        if isinstance(observation, Counts | Histogram):
            raise ValueError(
                f"metric {metric.name!r} is a value metric but got "
                f"{type(observation).__name__.lower()}{place}"
            )
        return float(observation)
    if metric.kind is MetricKind.COUNTS:
        if not isinstance(observation, Counts):
            raise ValueError(
                f"metric {metric.name!r} is a counts metric but got {observation!r}{place}"
            )
        if observation.total == 0:
            return math.nan
        ratio = observation.failed / observation.total
        return ratio if counts_as == "error_ratio" else 1.0 - ratio
    if not isinstance(observation, Histogram):
        raise ValueError(
            f"metric {metric.name!r} is a histogram metric but got {observation!r}{place}"
        )
    if quantile is None:
        return bucket_mean(observation)
    return bucket_quantile(quantile, observation)
