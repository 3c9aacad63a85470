"""Kayenta's per-metric classification (NetflixACAJudge), as pure functions.

Semantics follow Kayenta's `MannWhitneyClassifier`, `EffectSizes`, `IQRDetector` and
`Transforms` (spinnaker/kayenta, kayenta-judge; Apache-2.0); no code is copied.

1. NaN handling: ``remove`` drops NaN values, ``replace`` turns them into 0.
2. Optional outlier removal (``remove``): drop values outside
   [min(p1, Q1 - f IQR), max(p99, Q3 + f IQR)], f = 3 (Tukey fences widened to the
   1st/99th percentiles, Kayenta's "reduced sensitivity"); percentiles as Apache
   Commons Math's default (position p(n+1), i.e. R type 6).
3. An empty arm: ``Nodata`` (``NodataFailMetric`` when the metric must have data and
   is not critical; a critical metric's Nodata is critical); with NaN ``replace`` an
   empty arm is a ``Pass``. Identical samples, or a single distinct value across both,
   are a ``Pass``.
4. The confidence interval [l, u] and estimate e of the shift canary - baseline
   (`canary.judge.mannwhitney_ci`, R's wilcox.test). With tolerance t:
   ``High`` when l > t |e| (direction increase/either) and the effect size is at least
   the allowed increase; ``Low`` when u < -t |e| (direction decrease/either) and the
   effect size is at most the allowed decrease; otherwise ``Pass``. A NaN effect size
   skips its gate.
5. A critical metric classified High (Low) is a *critical* failure when its effect
   size is at least the critical increase (at most the critical decrease).

Effect sizes: mean ratio = mean(canary) / mean(baseline) (NaN when either mean is 0);
CLES = P(canary > baseline) + P(tie)/2 over all pairs (Vargha & Delaney 2000,
J. Educ. Behav. Stat. 25(2):101-132), i.e. U / (n m).

Deviation from Kayenta: when both arms are constant (one distinct value each),
Kayenta adds Gaussian noise of relative size 1e-5 before the test; we use the limit
of that: interval and estimate both equal to the difference of the two values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
from scipy.stats import rankdata

from canary.judge.mannwhitney_ci import ShiftInterval, shift_interval

__all__ = [
    "Classification",
    "EffectSizeSettings",
    "MetricClassification",
    "classify",
    "cles",
    "effect_size_settings",
    "mean_ratio",
    "outlier_mask",
    "percentile",
    "prepare",
]

Direction = Literal["increase", "decrease", "either"]
NanStrategy = Literal["remove", "replace"]
OutlierStrategy = Literal["remove", "keep"]


class Classification(StrEnum):
    """Kayenta's metric classification labels."""

    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NODATA = "Nodata"
    NODATA_FAIL_METRIC = "NodataFailMetric"
    ERROR = "Error"


@dataclass(frozen=True, slots=True)
class EffectSizeSettings:
    """Effect-size gates (Kayenta's ``effectSize`` block)."""

    measure: Literal["mean_ratio", "cles"] = "mean_ratio"
    allowed_increase: float = 1.0
    allowed_decrease: float = 1.0
    critical_increase: float = 1.0
    critical_decrease: float = 1.0


_EFFECT_KEYS = {
    "measure": "measure",
    "allowed_increase": "allowed_increase",
    "allowedIncrease": "allowed_increase",
    "allowed_decrease": "allowed_decrease",
    "allowedDecrease": "allowed_decrease",
    "critical_increase": "critical_increase",
    "criticalIncrease": "critical_increase",
    "critical_decrease": "critical_decrease",
    "criticalDecrease": "critical_decrease",
}


def effect_size_settings(
    raw: Mapping[str, float | str] | None, *, metric: str = "?"
) -> EffectSizeSettings:
    """Parse a metric's `effect_size` table; Kayenta's camelCase keys are accepted.

    Unset thresholds default to 1.0 for the mean ratio and 0.5 for CLES (no effect).
    Raises ValueError naming the metric and key for unknown keys or bad values.
    """
    raw = dict(raw or {})
    values: dict[str, float | str] = {}
    for key, value in raw.items():
        if key not in _EFFECT_KEYS:
            known = ", ".join(k for k in _EFFECT_KEYS if "_" in k or k == "measure")
            raise ValueError(f"metric {metric!r}: unknown key effect_size.{key} (known: {known})")
        values[_EFFECT_KEYS[key]] = value
    measure = str(values.pop("measure", "mean_ratio"))
    measure = {"meanRatio": "mean_ratio", "mean-ratio": "mean_ratio"}.get(measure, measure)
    if measure not in ("mean_ratio", "cles"):
        raise ValueError(
            f"metric {metric!r}: effect_size.measure must be 'mean_ratio' or 'cles', "
            f"got {measure!r}"
        )
    default = 0.5 if measure == "cles" else 1.0
    thresholds: dict[str, float] = {}
    for key in ("allowed_increase", "allowed_decrease", "critical_increase", "critical_decrease"):
        value = values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(
                f"metric {metric!r}: effect_size.{key} must be a number, got {value!r}"
            )
        if value < 0 or (measure == "cles" and value > 1):
            limit = "in [0, 1]" if measure == "cles" else ">= 0"
            raise ValueError(f"metric {metric!r}: effect_size.{key} must be {limit}, got {value}")
        thresholds[key] = float(value)
    return EffectSizeSettings(measure=measure, **thresholds)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- preprocessing


def percentile(values: np.ndarray, p: float) -> float:
    """Apache Commons Math's default percentile: position p(n+1)/100, clamped (R type 6)."""
    return float(np.percentile(values, p, method="weibull"))


def outlier_mask(
    values: np.ndarray, factor: float = 3.0, *, reduce_sensitivity: bool = True
) -> np.ndarray:
    """True for outliers: outside [Q1 - f IQR, Q3 + f IQR] (Tukey's fences), widened to
    [min(p1, Q1 - f IQR), max(p99, Q3 + f IQR)] with `reduce_sensitivity` (the judge's)."""
    if values.size == 0:
        return np.zeros(0, dtype=bool)
    q1, q3 = percentile(values, 25), percentile(values, 75)
    iqr = q3 - q1
    lower, upper = q1 - factor * iqr, q3 + factor * iqr
    if reduce_sensitivity:
        lower = min(percentile(values, 1), lower)
        upper = max(percentile(values, 99), upper)
    return (values < lower) | (values > upper)


def prepare(
    values: Sequence[float | None],
    nan_strategy: NanStrategy = "remove",
    outliers: OutlierStrategy = "keep",
    outlier_factor: float = 3.0,
) -> np.ndarray:
    """NaN handling then optional outlier removal (None counts as NaN)."""
    array = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    missing = np.isnan(array)
    array = array[~missing] if nan_strategy == "remove" else np.where(missing, 0.0, array)
    if outliers == "remove":
        array = array[~outlier_mask(array, outlier_factor)]
    return array


# --------------------------------------------------------------------------- effect sizes


def mean_ratio(control: np.ndarray, experiment: np.ndarray) -> float:
    """mean(experiment) / mean(control); NaN when either mean is 0 or an arm is empty."""
    if control.size == 0 or experiment.size == 0:
        return math.nan
    c, e = float(np.mean(control)), float(np.mean(experiment))
    return math.nan if c == 0.0 or e == 0.0 else e / c


def cles(control: np.ndarray, experiment: np.ndarray) -> float:
    """Common-language effect size P(experiment > control) + P(tie) / 2."""
    m, n = experiment.size, control.size
    if m == 0 or n == 0:
        return math.nan
    ranks = rankdata(np.concatenate((experiment, control)))
    return float((2.0 * ranks[:m].sum() - m * (m + 1)) / (2.0 * n * m))


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True, slots=True)
class MetricClassification:
    """One metric's Kayenta classification and the numbers behind it."""

    classification: Classification
    reason: str | None
    critical: bool
    deviation: float = math.nan  # mean ratio, as Kayenta reports it
    effect_size: float = math.nan
    interval: ShiftInterval | None = None
    bounds: tuple[float, float] | None = None  # (-t|e|, t|e|)
    n_canary: int = 0
    n_baseline: int = 0


def classify(
    control: np.ndarray,
    experiment: np.ndarray,
    *,
    name: str = "metric",
    direction: Direction = "either",
    nan_strategy: NanStrategy = "remove",
    critical: bool = False,
    must_have_data: bool = False,
    tolerance: float = 0.25,
    confidence: float = 0.98,
    effect: EffectSizeSettings | None = None,
) -> MetricClassification:
    """Kayenta's classification of already prepared samples (see the module docstring)."""
    effect = effect or EffectSizeSettings()
    n_c, n_e = int(control.size), int(experiment.size)
    sizes = {"n_canary": n_e, "n_baseline": n_c}

    if n_e == 0 or n_c == 0:
        if nan_strategy == "remove":
            reason = f"Missing data for {name}"
            if must_have_data and not critical:
                return MetricClassification(
                    Classification.NODATA_FAIL_METRIC, reason, False, 1.0, **sizes
                )
            return MetricClassification(Classification.NODATA, reason, critical, 1.0, **sizes)
        return MetricClassification(Classification.PASS, None, False, 1.0, **sizes)

    if np.array_equal(np.sort(experiment), np.sort(control)):
        reason = "The canary and baseline data are identical"
        return MetricClassification(Classification.PASS, reason, False, 1.0, **sizes)
    if np.unique(np.concatenate((experiment, control))).size == 1:
        return MetricClassification(Classification.PASS, None, False, 1.0, **sizes)

    deviation = mean_ratio(control, experiment)
    size = cles(control, experiment) if effect.measure == "cles" else deviation
    try:
        if np.unique(experiment).size == 1 and np.unique(control).size == 1:
            shift = float(experiment[0] - control[0])
            interval = ShiftInterval(shift, shift, shift, confidence, math.nan, math.nan)
        else:
            interval = shift_interval(experiment, control, confidence)
    except (ValueError, ArithmeticError) as exc:
        return MetricClassification(
            Classification.ERROR, f"Metric classification failed: {exc}", critical, **sizes
        )

    critical_value = tolerance * abs(interval.estimate)
    bounds = (-critical_value, critical_value)
    is_high = (
        direction in ("increase", "either")
        and interval.lower > critical_value
        and (math.isnan(size) or size >= effect.allowed_increase)
    )
    is_low = (
        not is_high
        and direction in ("decrease", "either")
        and interval.upper < -critical_value
        and (math.isnan(size) or size <= effect.allowed_decrease)
    )
    label = (
        Classification.HIGH if is_high else Classification.LOW if is_low else Classification.PASS
    )
    common = {
        "deviation": deviation,
        "effect_size": size,
        "interval": interval,
        "bounds": bounds,
        **sizes,
    }
    if label is Classification.PASS:
        return MetricClassification(label, None, False, **common)
    is_critical = critical and (
        math.isnan(size)
        or (size >= effect.critical_increase if is_high else size <= effect.critical_decrease)
    )
    suffix = " (Critical)" if is_critical else ""
    reason = f"{name} was classified as {label.value}{suffix}"
    return MetricClassification(label, reason, is_critical, **common)
