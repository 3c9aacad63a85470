"""The shared vocabulary: arms, observations, rounds, verdicts and decisions.

Everything here is plain data (frozen dataclasses and string enums) so the pure core
(`canary.judge`, `canary.engine`) and the edges (`metrics`, `traffic`, `store`, `api`)
can exchange it without importing each other (docs/architecture.md).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

import orjson


class Arm(StrEnum):
    """One side of the comparison."""

    CANARY = "canary"
    BASELINE = "baseline"


class MetricKind(StrEnum):
    """How a metric is observed and therefore judged."""

    COUNTS = "counts"  # failures among requests (2x2 table per round)
    HISTOGRAM = "histogram"  # cumulative `le` buckets per round
    VALUE = "value"  # one number per arm per round (gauges, threshold queries)


class Verdict(StrEnum):
    """Verdict of a metric or of a whole analysis."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    RUNNING = "running"


class Decision(StrEnum):
    """What a round decided to do with the traffic."""

    CONTINUE = "continue"  # stay at the current step, keep collecting
    ADVANCE = "advance"  # move to the next weight step
    PROMOTE = "promote"  # canary becomes 100% / the new stable
    ROLLBACK = "rollback"  # canary weight 0 at once
    HOLD = "hold"  # stop moving, keep weights, wait for an operator


class AnalysisStatus(StrEnum):
    """Lifecycle of a stored analysis."""

    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"  # stopped at its current weight, needs an operator
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    INCONCLUSIVE = "inconclusive"
    ABORTED = "aborted"
    COMPLETED = "completed"  # judged only (analyze / judge / Argo), no traffic moved

    @property
    def is_final(self) -> bool:
        return self not in (AnalysisStatus.RUNNING, AnalysisStatus.PAUSED, AnalysisStatus.HALTED)


class ActionState(StrEnum):
    """An action is recorded as intended before it is carried out."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


# --------------------------------------------------------------------------- observations


def _count(value: Any, what: str) -> int:
    """`value` as a non-negative int; integral floats (5000.0) are accepted, anything
    else (NaN, infinities, 5000.5, negatives, booleans, strings) is a ValueError."""
    if type(value) is int and value >= 0:  # the common case, without the ABC checks
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    if not isinstance(value, numbers.Integral):
        number = float(value)
        if not math.isfinite(number) or not number.is_integer():
            raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Counts:
    """Requests and failures of one arm within one round (exact integer deltas).

    Whatever the caller, both are non-negative integers with failed <= total: NaN,
    infinities, fractions and negatives are refused with a ValueError.
    """

    total: int
    failed: int

    def __post_init__(self) -> None:
        total = _count(self.total, "counts total")
        failed = _count(self.failed, "counts failed")
        if failed > total:
            raise ValueError(f"invalid counts: failed={failed} of total={total}")
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "failed", failed)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative `le` bucket counts of one arm within one round.

    `bounds` are the upper bounds in ascending order, the last one `math.inf`;
    `buckets[i]` counts observations <= bounds[i], so buckets are non-decreasing and
    `buckets[-1]` is the number of observations.
    """

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.buckets):
            raise ValueError("histogram bounds and buckets differ in length")
        buckets = tuple(self.buckets)
        if not all(type(b) is int and b >= 0 for b in buckets):  # else each as `_count` says
            buckets = tuple(_count(b, f"histogram bucket {i}") for i, b in enumerate(buckets))
        object.__setattr__(self, "buckets", buckets)
        for bound in self.bounds:
            if type(bound) is float and bound == bound:
                continue
            if isinstance(bound, bool) or not isinstance(bound, numbers.Real) or bound != bound:
                raise ValueError(f"histogram bound must be a number, got {bound!r}")
        object.__setattr__(self, "bounds", tuple(float(b) for b in self.bounds))
        if any(b < a for a, b in zip(self.buckets, self.buckets[1:], strict=False)):
            raise ValueError("histogram buckets must be cumulative (non-decreasing)")
        if any(b <= a for a, b in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ValueError("histogram bounds must be strictly increasing")
        if self.bounds and not math.isinf(self.bounds[-1]):
            raise ValueError("the last histogram bound must be +Inf")

    @property
    def total(self) -> int:
        return self.buckets[-1] if self.buckets else 0

    def exceeding(self, bound: float) -> Counts:
        """Observations slower than `bound` (x = n - count(le=bound)) as Counts."""
        index = self.bounds.index(bound)
        return Counts(total=self.total, failed=self.total - self.buckets[index])


#: What one arm shows for one metric in one round; None means "no data".
Observation: TypeAlias = Counts | Histogram | float | None


@dataclass(frozen=True, slots=True)
class RoundData:
    """The per-arm observations of one round, as the judges see them.

    `error` is set when the round's queries failed; such a round carries no evidence.
    `pods` optionally breaks the counter metrics down by pod:
    ``{arm name: {metric: {pod: Counts | Histogram}}}`` (empty when unknown); the
    per-arm observations stay the sums the judges use by default.
    """

    canary: Mapping[str, Observation]
    baseline: Mapping[str, Observation]
    start: datetime | None = None
    end: datetime | None = None
    error: str | None = None
    pods: Mapping[str, Mapping[str, Mapping[str, Observation]]] = field(default_factory=dict)

    def arm(self, arm: Arm | str) -> Mapping[str, Observation]:
        """The observations of one arm (`Arm` or its name; anything else is an error)."""
        return self.canary if Arm(arm) is Arm.CANARY else self.baseline

    def pod_observations(self, arm: Arm | str, metric: str) -> Mapping[str, Observation]:
        """Per-pod observations of `metric` in one arm ({} when not broken down)."""
        return self.pods.get(Arm(arm).value, {}).get(metric, {})


# --------------------------------------------------------------------------- judgements


@dataclass(frozen=True, slots=True)
class MetricResult:
    """The verdict on one metric after some rounds.

    `round` is the 1-based round at which the verdict was reached (None while running).
    `evidence` holds one entry per round judged (e.g. log e-values, per-round values);
    `statistics` the latest summary numbers (intervals, e-values, scores).
    """

    name: str
    verdict: Verdict
    round: int | None = None
    reasons: Sequence[str] = ()
    statistics: Mapping[str, Any] = field(default_factory=dict)
    evidence: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class Judgement:
    """The overall verdict of an analysis after its latest round."""

    verdict: Verdict
    round: int | None
    metrics: Mapping[str, MetricResult]
    reasons: Sequence[str] = ()
    score: float | None = None


# --------------------------------------------------------------------------- JSON form


def observation_to_json(observation: Observation) -> dict[str, Any] | None:
    """The stored / exchanged JSON form of an observation (None stays None)."""
    if observation is None:
        return None
    if isinstance(observation, Counts):
        return {"total": observation.total, "failed": observation.failed}
    if isinstance(observation, Histogram):
        bounds = ["+Inf" if math.isinf(b) else b for b in observation.bounds]
        return {"bounds": bounds, "buckets": list(observation.buckets)}
    value = float(observation)
    return {"value": None if math.isnan(value) else value}


def observation_from_json(data: Mapping[str, Any] | None) -> Observation:
    """Inverse of `observation_to_json`."""
    if data is None:
        return None
    if "buckets" in data:
        bounds = tuple(
            math.inf if b in ("+Inf", "Inf", math.inf) else float(b) for b in data["bounds"]
        )
        # The models check the counts (int() would truncate 5.5 and refuse "many" vaguely).
        return Histogram(bounds=bounds, buckets=tuple(data["buckets"]))
    if "total" in data:
        return Counts(total=data["total"], failed=data["failed"])
    value = data.get("value")
    return None if value is None else float(value)


def stored_observation(delta: Any) -> Observation:
    """An observation as the store keeps it (`observation_to_json`; a value JSON cannot
    hold, such as "+Inf", as a string); ValueError saying what is wrong with it."""
    if delta is not None and not isinstance(delta, Mapping):
        raise ValueError(f"expected an object, got {type(delta).__name__}")
    if delta is not None and isinstance(delta.get("value"), str):
        delta = {"value": delta["value"].replace("Inf", "inf")}
    try:
        return observation_from_json(delta)
    except KeyError as exc:
        raise ValueError(f"lacks {exc}") from None
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as the strings "NaN", "+Inf", "-Inf", recursively.

    JSON has neither (PostgreSQL's JSON columns and strict clients refuse them). The
    common case, nothing to replace, is checked at once (`_exact_json`).
    """
    if _exact_json(value) is not None:
        return value
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (ValueError, TypeError):
        return _replace_non_finite(value)


def json_text(value: Any) -> str:
    """`value` as JSON text, NaN and infinities as in `json_safe`, encoded once.

    The store's JSON columns use it (`store.database.connect`), so callers hand
    them plain values and nothing is encoded twice.
    """
    text = _exact_json(value)
    if text is not None:
        return text.decode()
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_replace_non_finite(value), allow_nan=False)


def _exact_json(value: Any) -> bytes | None:
    """`value` as compact JSON by orjson (several times faster than the standard
    encoder), if that text reads back equal to `value`; else None, and the standard
    encoder decides. The check is what makes the two agree: orjson writes NaN and
    infinities as null, and dates, UUIDs or dataclasses (which the standard encoder
    refuses) as strings or objects, none of which read back equal; tuples read back
    as lists and go the standard way too. Text that reads back equal reads back as
    the standard encoder's text does (both write floats to the shortest text that
    reads back exactly)."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # e.g. non-string keys, integers beyond 64 bits
        return None
    return text if orjson.loads(text) == value else None


def _replace_non_finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, Mapping):
        return {str(k): _replace_non_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_non_finite(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value
