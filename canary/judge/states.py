"""The judges' running states, typed, and the JSON they are stored as.

A judge's state is what it needs to continue an analysis round after round; it is
stored with the analysis (`analyses.judge_state`) and read back for the next round.
Each state here is a frozen dataclass whose `to_json()` writes exactly the JSON the
judges have always stored and whose `from_json()` reads it, refusing a malformed
state with a `JudgeStateError` naming the field (``values.errors.canary[2]``).

- `MannWhitneyState`: every metric's per-round values of both arms, their evidence
  and the round that failed the analysis, if any;
- `ThresholdState`: every metric's measurement counts, its run of failures, the
  round it failed at and its evidence;
- `SequentialState`: the round counter and the per-metric map; each metric's entry
  (its e-processes, histogram bounds and robust evidence, `canary.judge.sequential`
  and `canary.judge.robust`) stays a JSON mapping, read and written by that judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from canary.errors import JudgeStateError

__all__ = [
    "JudgeState",
    "MannWhitneyEvidence",
    "MannWhitneyFailure",
    "MannWhitneyState",
    "Measurement",
    "Samples",
    "SequentialState",
    "ThresholdMetricState",
    "ThresholdState",
    "check_metrics",
]


class JudgeState(Protocol):
    """What every judge state offers: the rounds judged so far and its stored form."""

    @property
    def round(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- reading JSON


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise JudgeStateError(where, f"expected an object, got {_shown(value)}")
    return value


def _keys(data: Mapping[str, Any], where: str, required: Iterable[str], allowed: Iterable[str]):
    """Refuse a missing or an unknown key (an unknown one would be lost on writing)."""
    prefix = f"{where}." if where else ""
    for key in required:
        if key not in data:
            raise JudgeStateError(f"{prefix}{key}", "missing")
    known = set(required) | set(allowed)
    for key in data:
        if key not in known:
            raise JudgeStateError(f"{prefix}{key}", f"not a key of this state ({_known(known)})")


def _known(keys: Iterable[str]) -> str:
    return "known: " + ", ".join(sorted(keys))


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise JudgeStateError(where, f"expected a list, got {_shown(value)}")
    return list(value)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JudgeStateError(where, f"expected an integer, got {_shown(value)}")
    return value


def _count(value: Any, where: str) -> int:
    number = _int(value, where)
    if number < 0:
        raise JudgeStateError(where, f"expected a count (>= 0), got {number}")
    return number


def _round(entry: Mapping[str, Any], where: str) -> int:
    """An evidence entry's round."""
    if "round" not in entry:
        raise JudgeStateError(f"{where}.round", "missing")
    return _int(entry["round"], f"{where}.round")


def _optional_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _number(value: Any, where: str) -> float | None:
    """A number or null (a missing value)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JudgeStateError(where, f"expected a number or null, got {_shown(value)}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise JudgeStateError(where, f"expected a string, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_metrics(found: Iterable[str], expected: Iterable[str], where: str) -> None:
    """Refuse a state that misses a metric the judge judges (`where` its map's path)."""
    have = set(found)
    for name in expected:
        if name not in have:
            raise JudgeStateError(f"{where}.{name}", "missing: the analysis judges this metric")


# --------------------------------------------------------------------------- mann_whitney


@dataclass(frozen=True, slots=True)
class Samples:
    """One metric's per-round values so far, per arm (None: no value that round)."""

    canary: tuple[float | None, ...] = ()
    baseline: tuple[float | None, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"canary": list(self.canary), "baseline": list(self.baseline)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Samples:
        data = _mapping(data, where)
        _keys(data, where, ("canary", "baseline"), ())
        arms = {
            arm: tuple(
                _number(v, f"{where}.{arm}[{i}]")
                for i, v in enumerate(_list(data[arm], f"{where}.{arm}"))
            )
            for arm in ("canary", "baseline")
        }
        return cls(canary=arms["canary"], baseline=arms["baseline"])


@dataclass(frozen=True, slots=True)
class MannWhitneyEvidence:
    """One round of one metric: both arms' values and the classification on all
    values so far, or `skipped` (the round's error) when its queries failed."""

    round: int
    canary: float | None = None
    baseline: float | None = None
    classification: str | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"round": self.round, "skipped": self.skipped}
        data: dict[str, Any] = {
            "round": self.round,
            "canary": self.canary,
            "baseline": self.baseline,
        }
        if self.classification is not None:
            data["classification"] = self.classification
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> MannWhitneyEvidence:
        data = _mapping(data, where)
        k = _round(data, where)
        if "skipped" in data:
            _keys(data, where, ("round", "skipped"), ())
            return cls(round=k, skipped=_str(data["skipped"], f"{where}.skipped"))
        _keys(data, where, ("round", "canary", "baseline"), ("classification",))
        classification = data.get("classification")
        return cls(
            round=k,
            canary=_number(data["canary"], f"{where}.canary"),
            baseline=_number(data["baseline"], f"{where}.baseline"),
            classification=None
            if classification is None
            else _str(classification, f"{where}.classification"),
        )


@dataclass(frozen=True, slots=True)
class MannWhitneyFailure:
    """The round that failed the analysis, the metrics that failed it and why."""

    round: int
    metrics: tuple[str, ...]
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "metrics": list(self.metrics), "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> MannWhitneyFailure:
        data = _mapping(data, where)
        _keys(data, where, ("round", "metrics", "reasons"), ())
        return cls(
            round=_int(data["round"], f"{where}.round"),
            metrics=tuple(
                _str(m, f"{where}.metrics[{i}]")
                for i, m in enumerate(_list(data["metrics"], f"{where}.metrics"))
            ),
            reasons=tuple(
                _str(r, f"{where}.reasons[{i}]")
                for i, r in enumerate(_list(data["reasons"], f"{where}.reasons"))
            ),
        )


@dataclass(frozen=True, slots=True)
class MannWhitneyState:
    """The mann_whitney judge after `round` rounds (`canary.judge.mann_whitney`)."""

    round: int
    values: Mapping[str, Samples]
    evidence: Mapping[str, tuple[MannWhitneyEvidence, ...]]
    failed: MannWhitneyFailure | None = None

    @classmethod
    def initial(cls, metrics: Iterable[str]) -> MannWhitneyState:
        names = list(metrics)
        return cls(round=0, values={n: Samples() for n in names}, evidence={n: () for n in names})

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "values": {name: samples.to_json() for name, samples in self.values.items()},
            "evidence": {
                name: [entry.to_json() for entry in entries]
                for name, entries in self.evidence.items()
            },
            "failed": None if self.failed is None else self.failed.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> MannWhitneyState:
        data = _mapping(data, "state")
        # `failed` is always written; read a state without it as not failed.
        _keys(data, "", ("round", "values", "evidence"), ("failed",))
        values = {
            name: Samples.from_json(samples, f"values.{name}")
            for name, samples in _mapping(data["values"], "values").items()
        }
        evidence = {
            name: tuple(
                MannWhitneyEvidence.from_json(entry, f"evidence.{name}[{i}]")
                for i, entry in enumerate(_list(entries, f"evidence.{name}"))
            )
            for name, entries in _mapping(data["evidence"], "evidence").items()
        }
        failed = data.get("failed")
        return cls(
            round=_count(data["round"], "round"),
            values=values,
            evidence=evidence,
            failed=None if failed is None else MannWhitneyFailure.from_json(failed, "failed"),
        )


# --------------------------------------------------------------------------- threshold

Outcome = Literal["successful", "failed", "no_data"]
_OUTCOMES: tuple[Outcome, ...] = ("successful", "failed", "no_data")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One round of one threshold metric: the canary's value and its outcome, or
    `skipped` (the round's error) when its queries failed."""

    round: int
    value: float | None = None
    outcome: Outcome | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"round": self.round, "skipped": self.skipped}
        return {"round": self.round, "value": self.value, "outcome": self.outcome}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Measurement:
        data = _mapping(data, where)
        k = _round(data, where)
        if "skipped" in data:
            _keys(data, where, ("round", "skipped"), ())
            return cls(round=k, skipped=_str(data["skipped"], f"{where}.skipped"))
        _keys(data, where, ("round", "value", "outcome"), ())
        outcome = data["outcome"]
        if outcome not in _OUTCOMES:
            raise JudgeStateError(
                f"{where}.outcome", f"expected one of {', '.join(_OUTCOMES)}, got {_shown(outcome)}"
            )
        return cls(round=k, value=_number(data["value"], f"{where}.value"), outcome=outcome)


@dataclass(frozen=True, slots=True)
class ThresholdMetricState:
    """One threshold metric so far: measurements per outcome, the failed ones in a row
    (`run`), the round its failure limit was exceeded and its evidence."""

    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    run: int = 0
    failed_round: int | None = None
    evidence: tuple[Measurement, ...] = ()
    #: `evidence` as stored, grown with it (`add`): every round's judgement lists all
    #: of it, which would otherwise cost a conversion per round judged so far.
    stored_evidence: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.stored_evidence) != len(self.evidence):
            stored = tuple(entry.to_json() for entry in self.evidence)
            object.__setattr__(self, "stored_evidence", stored)

    def add(
        self,
        entry: Measurement,
        *,
        successful: int,
        failed: int,
        inconclusive: int,
        run: int,
        failed_round: int | None,
    ) -> ThresholdMetricState:
        """This metric after one more round: `entry` and the counts it leaves."""
        return ThresholdMetricState(
            successful=successful,
            failed=failed,
            inconclusive=inconclusive,
            run=run,
            failed_round=failed_round,
            evidence=(*self.evidence, entry),
            stored_evidence=(*self.stored_evidence, entry.to_json()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "successful": self.successful,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "run": self.run,
            "failed_round": self.failed_round,
            "evidence": list(self.stored_evidence),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ThresholdMetricState:
        data = _mapping(data, where)
        counts = ("successful", "failed", "inconclusive", "run")
        _keys(data, where, (*counts, "failed_round", "evidence"), ())
        return cls(
            **{key: _count(data[key], f"{where}.{key}") for key in counts},
            failed_round=_optional_int(data["failed_round"], f"{where}.failed_round"),
            evidence=tuple(
                Measurement.from_json(entry, f"{where}.evidence[{i}]")
                for i, entry in enumerate(_list(data["evidence"], f"{where}.evidence"))
            ),
        )


@dataclass(frozen=True, slots=True)
class ThresholdState:
    """The threshold judge after `round` rounds (`canary.judge.threshold`)."""

    round: int
    metrics: Mapping[str, ThresholdMetricState]

    @classmethod
    def initial(cls, metrics: Iterable[str]) -> ThresholdState:
        return cls(round=0, metrics={name: ThresholdMetricState() for name in metrics})

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "metrics": {name: metric.to_json() for name, metric in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> ThresholdState:
        data = _mapping(data, "state")
        _keys(data, "", ("round", "metrics"), ())
        return cls(
            round=_count(data["round"], "round"),
            metrics={
                name: ThresholdMetricState.from_json(metric, f"metrics.{name}")
                for name, metric in _mapping(data["metrics"], "metrics").items()
            },
        )


# --------------------------------------------------------------------------- sequential


@dataclass(frozen=True, slots=True)
class SequentialState:
    """The sequential judge after `round` rounds (`canary.judge.sequential`).

    `metrics` maps each judged metric to its evidence state, a JSON mapping that the
    judge reads and writes itself (not typed here).
    """

    round: int
    metrics: Mapping[str, Mapping[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"judge": "sequential", "round": self.round, "metrics": dict(self.metrics)}

    @classmethod
    def from_json(cls, data: Any) -> SequentialState:
        data = _mapping(data, "state")
        _keys(data, "", ("judge", "round", "metrics"), ())
        if data["judge"] != "sequential":
            raise JudgeStateError("judge", f"expected 'sequential', got {_shown(data['judge'])}")
        metrics = _mapping(data["metrics"], "metrics")
        return cls(
            round=_count(data["round"], "round"),
            metrics={name: _mapping(entry, f"metrics.{name}") for name, entry in metrics.items()},
        )
