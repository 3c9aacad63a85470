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
- `SequentialState`: per metric a `SequentialMetricState`, its verdict rounds,
  histogram bounds and one `Track` per tested event (the e-processes' running sums,
  the robust process's `RobustStarts` and the baseline's `SpreadSums`, see
  `canary.judge.sequential` and `canary.judge.robust`).
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
    "RobustStarts",
    "Samples",
    "SequentialMetricState",
    "SequentialState",
    "SpreadSums",
    "ThresholdMetricState",
    "ThresholdState",
    "Track",
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


def _real(value: Any, where: str) -> float:
    """A number (not null), kept as stored (an int stays an int)."""
    if value is None:
        raise JudgeStateError(where, "expected a number, got None")
    return _number(value, where)  # type: ignore[return-value]


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    """A list of numbers (none null), kept as stored."""
    return tuple(_real(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where)))


def _counts(value: Any, where: str, size: int) -> tuple[int, ...]:
    items = _list(value, where)
    if len(items) != size:
        raise JudgeStateError(where, f"expected {size} counts, got {_shown(value)}")
    return tuple(_count(v, f"{where}[{i}]") for i, v in enumerate(items))


def _optional(data: Mapping[str, Any], key: str, read: Any, where: str) -> Any:
    """`read(data[key], path)`, or None when the key is absent (an older stored form)."""
    return read(data[key], f"{where}.{key}") if key in data else None


def _stored_order(data: Mapping[str, Any], canonical: tuple[str, ...]) -> tuple[str, ...] | None:
    """The keys' order as stored when an older version wrote them in another order than
    `canonical` (None when it is canonical), so that they are written back as they were."""
    keys = tuple(data)
    return None if keys == tuple(k for k in canonical if k in data) else keys


def _stored(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _in_order(data: dict[str, Any], order: tuple[str, ...] | None) -> dict[str, Any]:
    """`data` with the keys of `order` first, in that order, and the others after."""
    if order is None:
        return data
    out = {key: data[key] for key in order if key in data}
    out.update((key, value) for key, value in data.items() if key not in out)
    return out


@dataclass(frozen=True, slots=True)
class SpreadSums:
    """The baseline's spread so far (`canary.judge.robust.BaselineSpread`): its rounds'
    sums and each pod's (events, requests) summed over the rounds, by pod name.

    `legacy` holds what states stored before pods were kept by name carry instead
    (per-round sums `LEGACY`), as stored, so they keep counting and are written back;
    their `pods` is None (no pods seen by name) until a round adds them.
    """

    LEGACY = ("pod_ss", "pod_df", "pod_neff", "pod_max")

    pods: Mapping[str, tuple[int, int]] | None = field(default_factory=dict)
    rounds: int = 0
    s_m: float = 0.0
    s_m2: float = 0.0
    s_y: float = 0.0
    s_yy: float = 0.0
    legacy: Mapping[str, float] = field(default_factory=dict)
    order: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    KEYS = ("pods", "rounds", "s_m", "s_m2", "s_y", "s_yy", *LEGACY)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.pods is not None:
            data["pods"] = {name: list(sums) for name, sums in self.pods.items()}
        data.update(rounds=self.rounds, s_m=self.s_m, s_m2=self.s_m2, s_y=self.s_y, s_yy=self.s_yy)
        data.update(self.legacy)
        return _in_order(data, self.order)

    @classmethod
    def from_json(cls, data: Any, where: str) -> SpreadSums:
        data = _mapping(data, where)
        sums = ("s_m", "s_m2", "s_y", "s_yy")
        _keys(data, where, (), cls.KEYS)
        pods = None if "pods" not in data else _mapping(data["pods"], f"{where}.pods")
        values = {key: float(_real(data.get(key, 0.0), f"{where}.{key}")) for key in sums}
        legacy = {key: _real(data[key], f"{where}.{key}") for key in cls.LEGACY if key in data}
        return cls(
            pods=None
            if pods is None
            else {
                str(name): _counts(pair, f"{where}.pods.{name}", 2)  # type: ignore[misc]
                for name, pair in pods.items()
            },
            rounds=_count(data.get("rounds", 0), f"{where}.rounds"),
            legacy=legacy,
            order=_stored_order(data, cls.KEYS),
            **values,
        )


@dataclass(frozen=True, slots=True)
class RobustStarts:
    """The robust e-process per start round (`canary.judge.robust.log_evidence`): the
    summed round log-ratios per eta (one row per start), a = sum d^2, b = sum d z and
    log w of each start. `a` and `b` are None in states stored before they were kept
    (read as zeros)."""

    logs: tuple[tuple[float, ...], ...] = ()
    a: tuple[float, ...] | None = ()
    b: tuple[float, ...] | None = ()
    log_w: tuple[float, ...] = ()
    order: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    KEYS = ("logs", "a", "b", "log_w")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"logs": [list(row) for row in self.logs]}
        if self.a is not None:
            data["a"] = list(self.a)
        if self.b is not None:
            data["b"] = list(self.b)
        data["log_w"] = list(self.log_w)
        return _in_order(data, self.order)

    @classmethod
    def from_json(cls, data: Any, where: str) -> RobustStarts:
        data = _mapping(data, where)
        _keys(data, where, ("logs", "log_w"), ("a", "b"))
        logs = tuple(
            _numbers(row, f"{where}.logs[{i}]")
            for i, row in enumerate(_list(data["logs"], f"{where}.logs"))
        )
        starts = cls(
            logs=logs,
            a=_optional(data, "a", _numbers, where),
            b=_optional(data, "b", _numbers, where),
            log_w=_numbers(data["log_w"], f"{where}.log_w"),
            order=_stored_order(data, cls.KEYS),
        )
        for key in ("a", "b", "log_w"):
            column = getattr(starts, key)
            if column is not None and len(column) != len(logs):
                raise JudgeStateError(
                    f"{where}.{key}",
                    f"expected {len(logs)} values (one per start), got {len(column)}",
                )
        return starts


@dataclass(frozen=True, slots=True)
class Track:
    """The running sums of one tested event (a counts metric, or one histogram bound).

    `loglik`: S(psi) on the judge's psi grid; `rounds`: rounds with an informative
    table; `canary`, `baseline`: (requests, events); `tables`: (x, n, y, m) of every
    informative round; `late`: the request-level start-time mixture per fail-grid psi;
    `starts`, `spread`, `canary_pods`: the robust process, the baseline's spread and
    the most canary pods with requests in a round. Each optional field is None when
    the state was stored before it was kept (and is then not written back).

    `retired`: what the first versions kept for their over-dispersion guard
    (`dispersion`, `phi`), unused since, carried and written back as stored.
    """

    loglik: tuple[float, ...]
    rounds: int = 0
    canary: tuple[int, int] = (0, 0)
    baseline: tuple[int, int] = (0, 0)
    tables: tuple[tuple[int, int, int, int], ...] | None = ()
    late: tuple[float, ...] | None = None
    starts: RobustStarts | None = None
    spread: SpreadSums | None = None
    canary_pods: int | None = None
    retired: Mapping[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] | None = field(default=None, compare=False, repr=False)
    #: The same sums as read-only arrays, set by the judge on the track it made so that
    #: its next round need not rebuild them from the tuples; never compared or written,
    #: and not carried over by `dataclasses.replace` (None: built from the tuples).
    numeric: Any = field(default=None, init=False, compare=False, repr=False)

    RETIRED = ("dispersion", "phi")
    KEYS = (
        "loglik",
        "rounds",
        "canary",
        "baseline",
        "tables",
        "late",
        "starts",
        "spread",
        "canary_pods",
    )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "loglik": list(self.loglik),
            "rounds": self.rounds,
            "canary": list(self.canary),
            "baseline": list(self.baseline),
        }
        data.update((key, _stored(value)) for key, value in self.retired.items())
        tables = None if self.tables is None else [list(table) for table in self.tables]
        if tables is not None and self.order is None:
            data["tables"] = tables
        if self.late is not None:
            data["late"] = list(self.late)
        if self.starts is not None:
            data["starts"] = self.starts.to_json()
        if self.spread is not None:
            data["spread"] = self.spread.to_json()
        if self.canary_pods is not None:
            data["canary_pods"] = self.canary_pods
        if self.order is None:
            return data
        # An older track: the keys it lacked come after its own, `tables` last, as
        # the judge added them.
        if tables is not None:
            data["tables"] = tables
        return _in_order(data, self.order)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Track:
        data = _mapping(data, where)
        optional = ("tables", "late", "starts", "spread", "canary_pods", *cls.RETIRED)
        _keys(data, where, ("loglik", "rounds", "canary", "baseline"), optional)
        retired = {}
        if "dispersion" in data:
            retired["dispersion"] = _numbers(data["dispersion"], f"{where}.dispersion")
        if "phi" in data:
            retired["phi"] = _real(data["phi"], f"{where}.phi")

        def tables(value: Any, at: str) -> tuple[tuple[int, ...], ...]:
            return tuple(_counts(t, f"{at}[{i}]", 4) for i, t in enumerate(_list(value, at)))

        return cls(
            loglik=_numbers(data["loglik"], f"{where}.loglik"),
            rounds=_count(data["rounds"], f"{where}.rounds"),
            canary=_counts(data["canary"], f"{where}.canary", 2),  # type: ignore[arg-type]
            baseline=_counts(data["baseline"], f"{where}.baseline", 2),  # type: ignore[arg-type]
            tables=_optional(data, "tables", tables, where),
            late=_optional(data, "late", _numbers, where),
            starts=_optional(data, "starts", RobustStarts.from_json, where),
            spread=_optional(data, "spread", SpreadSums.from_json, where),
            canary_pods=_optional(data, "canary_pods", _count, where),
            retired=retired,
            # Without `tables` (stored before they were kept) the judge adds them last.
            order=_stored_order(data, (*cls.KEYS[:4], *cls.RETIRED, *cls.KEYS[4:]))
            or (None if "tables" in data else tuple(data)),
        )


Estimate = float | str | None


@dataclass(frozen=True, slots=True)
class SequentialMetricState:
    """One sequential metric so far: the rounds it failed or passed at, the canary's
    requests and its tracks (one for a counts metric, one per bound for a histogram).

    A histogram metric (`histogram`) also keeps the bounds chosen at its warm-up (None
    before), that round, and the bounds that can PASS (`pass_bounds`; None in states
    stored before they were kept: every bound). `estimates`: each track's conditional
    MLE of the odds ratio taken at the verdict (None until then).
    """

    tracks: tuple[Track, ...] = ()
    fail_round: int | None = None
    pass_round: int | None = None
    requests: int = 0
    histogram: bool = False
    bounds: tuple[float, ...] | None = None
    warmup_round: int | None = None
    pass_bounds: tuple[float, ...] | None = None
    estimates: tuple[Estimate, ...] | None = None
    order: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    KEYS = (
        "fail_round",
        "pass_round",
        "requests",
        "bounds",
        "warmup_round",
        "tracks",
        "pass_bounds",
        "estimates",
    )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "fail_round": self.fail_round,
            "pass_round": self.pass_round,
            "requests": self.requests,
        }
        if self.histogram:
            data["bounds"] = None if self.bounds is None else list(self.bounds)
            data["warmup_round"] = self.warmup_round
        data["tracks"] = [track.to_json() for track in self.tracks]
        if self.pass_bounds is not None:
            data["pass_bounds"] = list(self.pass_bounds)
        if self.estimates is not None:
            data["estimates"] = list(self.estimates)
        return _in_order(data, self.order)

    @classmethod
    def from_json(cls, data: Any, where: str) -> SequentialMetricState:
        data = _mapping(data, where)
        histogram = "bounds" in data
        required = ["fail_round", "pass_round", "requests", "tracks"]
        if histogram:
            required += ["warmup_round"]
        _keys(data, where, required, ("bounds", "pass_bounds", "estimates"))

        def estimates(value: Any, at: str) -> tuple[Estimate, ...]:
            out: list[Estimate] = []
            for i, v in enumerate(_list(value, at)):
                out.append(v if v == "inf" else _number(v, f"{at}[{i}]"))
            return tuple(out)

        bounds = data.get("bounds")
        return cls(
            tracks=tuple(
                Track.from_json(track, f"{where}.tracks[{i}]")
                for i, track in enumerate(_list(data["tracks"], f"{where}.tracks"))
            ),
            fail_round=_optional_int(data["fail_round"], f"{where}.fail_round"),
            pass_round=_optional_int(data["pass_round"], f"{where}.pass_round"),
            requests=_count(data["requests"], f"{where}.requests"),
            histogram=histogram,
            bounds=None if bounds is None else _numbers(bounds, f"{where}.bounds"),
            warmup_round=_optional_int(data.get("warmup_round"), f"{where}.warmup_round"),
            pass_bounds=_optional(data, "pass_bounds", _numbers, where),
            estimates=_optional(data, "estimates", estimates, where),
            order=_stored_order(data, cls.KEYS),
        )


@dataclass(frozen=True, slots=True)
class SequentialState:
    """The sequential judge after `round` rounds (`canary.judge.sequential`): each
    judged metric's evidence."""

    round: int
    metrics: Mapping[str, SequentialMetricState]

    def to_json(self) -> dict[str, Any]:
        return {
            "judge": "sequential",
            "round": self.round,
            "metrics": {name: entry.to_json() for name, entry in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> SequentialState:
        data = _mapping(data, "state")
        _keys(data, "", ("judge", "round", "metrics"), ())
        if data["judge"] != "sequential":
            raise JudgeStateError("judge", f"expected 'sequential', got {_shown(data['judge'])}")
        metrics = _mapping(data["metrics"], "metrics")
        return cls(
            round=_count(data["round"], "round"),
            metrics={
                name: SequentialMetricState.from_json(entry, f"metrics.{name}")
                for name, entry in metrics.items()
            },
        )
