"""The JSON form of an analysis (metrics + per-round observations), as `canary judge` reads it.

One analysis::

    {"id": "checkout-v42",
     "settings": {"max_rounds": 30},                                  (optional)
     "metrics": {"errors":  {"kind": "counts"},
                 "latency": {"kind": "histogram", "bounds": [5, 10, 25, "+Inf"]},
                 "cpu":     {"kind": "value"}},
     "rounds": [{"canary":   {"errors": {"total": 1000, "failed": 3},
                              "latency": {"buckets": [0, 10, 200, 1000]}, "cpu": 0.41},
                 "baseline": {...},
                 "error": null, "start": "2026-01-01T00:00:00Z", "end": ...}]}   (optional)

Counts and buckets are what happened within the round (deltas, not running totals);
buckets are cumulative over `le` as in Prometheus; a value is one number (or null).
A metric missing from an arm, or null, is "no data". Besides `kind` and `bounds`, a
metric may carry any per-metric setting of the configuration (`margin`, `alpha_fail`,
`min`, `max` ...). A file holds one JSON document (an analysis, or a list of them) or
JSON Lines, one analysis per line. Every problem names the line and the field.

`analysis_to_json` is the inverse (tests write their inputs with it).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from canary.config import AnalysisSettings, MetricConfig, metric_config, validation_problems
from canary.errors import AnalysisInputError
from canary.model import Counts, Histogram, MetricKind, Observation, RoundData

__all__ = [
    "AnalysisInput",
    "analysis_to_json",
    "parse_analysis",
    "read_analyses",
]

_METRIC_RESERVED = {"kind", "bounds"}


@dataclass(frozen=True)
class AnalysisInput:
    """One analysis read from JSON."""

    id: str | None
    metrics: list[MetricConfig]
    rounds: list[RoundData]
    settings: dict[str, Any]  # raw "settings" overrides (validated keys), may be empty
    line: int | None = None  # 1-based line in a JSON Lines file


def _fail(where: str, field: str, message: str) -> AnalysisInputError:
    location = f"{where}: {field}" if field else where
    return AnalysisInputError(f"{location}: {message}")


def _int(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, field, f"expected a non-negative integer, got {json.dumps(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise _fail(where, field, f"expected a non-negative integer, got {value}")
    if value < 0:
        raise _fail(where, field, f"expected a non-negative integer, got {value}")
    return int(value)


def _bound(value: Any, where: str, field: str) -> float:
    if isinstance(value, str) and value.strip() in ("+Inf", "Inf", "inf", "+inf"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, field, f'expected a number or "+Inf", got {json.dumps(value)}')
    return float(value)


def _metric(
    name: str, raw: Any, where: str, judge: str
) -> tuple[MetricConfig, tuple[float, ...] | None]:
    field = f"metrics.{name}"
    if not isinstance(raw, Mapping):
        raise _fail(where, field, 'expected an object such as {"kind": "counts"}')
    kind = raw.get("kind", "counts")
    if kind not in [k.value for k in MetricKind]:
        raise _fail(where, f"{field}.kind", f"expected counts, histogram or value, got {kind!r}")
    bounds: tuple[float, ...] | None = None
    if kind == MetricKind.HISTOGRAM:
        raw_bounds = raw.get("bounds")
        if not isinstance(raw_bounds, list) or not raw_bounds:
            raise _fail(where, f"{field}.bounds", "a histogram needs its bucket bounds (le)")
        bounds = tuple(_bound(b, where, f"{field}.bounds[{i}]") for i, b in enumerate(raw_bounds))
        if any(b <= a for a, b in itertools.pairwise(bounds)):
            raise _fail(where, f"{field}.bounds", "bounds must be strictly increasing")
        if not math.isinf(bounds[-1]):
            raise _fail(where, f"{field}.bounds", 'the last bound must be "+Inf"')
    elif "bounds" in raw:
        raise _fail(where, f"{field}.bounds", f"only histogram metrics have bounds, not {kind}")
    options = {k: v for k, v in raw.items() if k not in _METRIC_RESERVED}
    try:
        config = metric_config(judge, {**options, "name": name, "kind": kind})
    except ValidationError as exc:
        loc, message = validation_problems(exc)[0]
        raise _fail(where, f"{field}.{loc}" if loc else field, message) from None
    return config, bounds


def _observation(
    config: MetricConfig, bounds: tuple[float, ...] | None, raw: Any, where: str, field: str
) -> Observation:
    if raw is None:
        return None
    if config.kind is MetricKind.VALUE:
        if isinstance(raw, Mapping) and set(raw) <= {"value"}:
            raw = raw.get("value")
            if raw is None:
                return None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _fail(where, field, f"expected a number or null, got {json.dumps(raw)}")
        return float(raw)
    if not isinstance(raw, Mapping):
        what = (
            '{"total": N, "failed": F}'
            if config.kind is MetricKind.COUNTS
            else '{"buckets": [...]}'
        )
        raise _fail(where, field, f"expected {what}, got {json.dumps(raw)}")
    if config.kind is MetricKind.COUNTS:
        unknown = set(raw) - {"total", "failed"}
        if unknown:
            raise _fail(where, f"{field}.{sorted(unknown)[0]}", "unknown key (total, failed)")
        for key in ("total", "failed"):
            if key not in raw:
                raise _fail(where, f"{field}.{key}", "required key is missing")
        total = _int(raw["total"], where, f"{field}.total")
        failed = _int(raw["failed"], where, f"{field}.failed")
        if failed > total:
            raise _fail(where, f"{field}.failed", f"{failed} failed of only {total} requests")
        return Counts(total=total, failed=failed)
    assert bounds is not None
    unknown = set(raw) - {"buckets", "bounds"}
    if unknown:
        raise _fail(where, f"{field}.{sorted(unknown)[0]}", "unknown key (buckets)")
    if "bounds" in raw:
        own = tuple(_bound(b, where, f"{field}.bounds[{i}]") for i, b in enumerate(raw["bounds"]))
        if own != bounds:
            raise _fail(where, f"{field}.bounds", "differ from the metric's bounds")
    buckets_raw = raw.get("buckets")
    if not isinstance(buckets_raw, list):
        raise _fail(where, f"{field}.buckets", "required: cumulative counts, one per bound")
    if len(buckets_raw) != len(bounds):
        raise _fail(
            where,
            f"{field}.buckets",
            f"{len(buckets_raw)} buckets for {len(bounds)} bounds",
        )
    buckets = tuple(_int(b, where, f"{field}.buckets[{i}]") for i, b in enumerate(buckets_raw))
    for i in range(1, len(buckets)):
        if buckets[i] < buckets[i - 1]:
            raise _fail(
                where,
                f"{field}.buckets[{i}]",
                f"buckets are cumulative over le and cannot decrease ({buckets[i - 1]} then "
                f"{buckets[i]})",
            )
    return Histogram(bounds=bounds, buckets=buckets)


def _pods(
    metrics: Sequence[tuple[MetricConfig, tuple[float, ...] | None]],
    raw: Any,
    where: str,
    field: str,
) -> dict[str, dict[str, Observation]]:
    """An arm's optional ``"pods": {pod: {metric: observation}}`` as {metric: {pod: obs}}."""
    if not isinstance(raw, Mapping):
        raise _fail(where, field, 'expected {"pod name": {"metric": observation}}')
    known = {config.name: (config, bounds) for config, bounds in metrics}
    out: dict[str, dict[str, Observation]] = {}
    for pod, observations in raw.items():
        if not isinstance(observations, Mapping):
            raise _fail(where, f"{field}.{pod}", "expected an object of metric observations")
        for name, value in observations.items():
            if name not in known:
                raise _fail(where, f"{field}.{pod}.{name}", "not a metric of this analysis")
            config, bounds = known[name]
            if config.kind is MetricKind.VALUE:
                raise _fail(where, f"{field}.{pod}.{name}", "value metrics have no pods")
            obs = _observation(config, bounds, value, where, f"{field}.{pod}.{name}")
            if obs is not None:
                out.setdefault(name, {})[str(pod)] = obs
    return out


def _time(raw: Any, where: str, field: str) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _fail(where, field, "expected an ISO 8601 time")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(where, field, f"invalid ISO 8601 time {raw!r}") from None


def parse_analysis(
    doc: Any, *, where: str, line: int | None = None, judge: str = "sequential"
) -> AnalysisInput:
    """Validate one analysis document; `where` prefixes every error (e.g. "FILE line 3").

    Its metrics may carry the keys of `judge`'s metrics (`canary.config.METRIC_TYPES`).
    """
    if not isinstance(doc, Mapping):
        raise _fail(where, "", "an analysis must be a JSON object with metrics and rounds")
    unknown = set(doc) - {"id", "settings", "metrics", "rounds"}
    if unknown:
        raise _fail(where, sorted(unknown)[0], "unknown key (id, settings, metrics, rounds)")
    ident = doc.get("id")
    if ident is not None and not isinstance(ident, str | int):
        raise _fail(where, "id", "expected a string")
    settings = doc.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise _fail(where, "settings", "expected an object")
    try:
        AnalysisSettings.model_validate(settings)
    except ValidationError as exc:
        loc, message = validation_problems(exc, ("settings",))[0]
        raise _fail(where, loc, message) from None
    raw_metrics = doc.get("metrics")
    if not isinstance(raw_metrics, Mapping) or not raw_metrics:
        raise _fail(where, "metrics", 'required: an object of metrics, e.g. {"errors": {}}')
    if "pods" in raw_metrics:
        raise _fail(where, "metrics.pods", '"pods" is reserved for the per-pod breakdown')
    metrics: list[tuple[MetricConfig, tuple[float, ...] | None]] = [
        _metric(str(name), raw, where, judge) for name, raw in raw_metrics.items()
    ]
    raw_rounds = doc.get("rounds")
    if not isinstance(raw_rounds, list):
        raise _fail(where, "rounds", "required: a list of rounds")
    rounds = []
    known = {config.name for config, _ in metrics}
    for r, raw_round in enumerate(raw_rounds):
        field = f"rounds[{r}]"
        if not isinstance(raw_round, Mapping):
            raise _fail(where, field, "expected an object with canary and baseline")
        unknown = set(raw_round) - {"canary", "baseline", "error", "start", "end"}
        if unknown:
            raise _fail(where, f"{field}.{sorted(unknown)[0]}", "unknown key")
        error = raw_round.get("error")
        if error is not None and not isinstance(error, str):
            raise _fail(where, f"{field}.error", "expected a string (why the round has no data)")
        arms: dict[str, dict[str, Observation]] = {}
        pods: dict[str, dict[str, dict[str, Observation]]] = {}
        for arm in ("canary", "baseline"):
            raw_arm = raw_round.get(arm)
            if raw_arm is None:
                if error is None:
                    raise _fail(where, f"{field}.{arm}", "required key is missing")
                raw_arm = {}
            if not isinstance(raw_arm, Mapping):
                raise _fail(where, f"{field}.{arm}", "expected an object of metric observations")
            for name in raw_arm:
                if name not in known and name != "pods":
                    raise _fail(where, f"{field}.{arm}.{name}", "not a metric of this analysis")
            if raw_arm.get("pods") is not None:
                by_metric = _pods(metrics, raw_arm["pods"], where, f"{field}.{arm}.pods")
                if by_metric:
                    pods[arm] = by_metric
            arms[arm] = {
                config.name: _observation(
                    config, bounds, raw_arm.get(config.name), where, f"{field}.{arm}.{config.name}"
                )
                for config, bounds in metrics
            }
        rounds.append(
            RoundData(
                canary=arms["canary"],
                baseline=arms["baseline"],
                start=_time(raw_round.get("start"), where, f"{field}.start"),
                end=_time(raw_round.get("end"), where, f"{field}.end"),
                error=error,
                pods=pods,
            )
        )
    return AnalysisInput(
        id=None if ident is None else str(ident),
        metrics=[config for config, _ in metrics],
        rounds=rounds,
        settings=dict(settings),
        line=line,
    )


def read_analyses(
    text: str, source: str = "input", *, lines: bool | None = None, judge: str = "sequential"
) -> list[AnalysisInput]:
    """Every analysis in `text`: one JSON document (object or list) or JSON Lines.

    `lines=True` forces JSON Lines (e.g. for a `.jsonl` file holding one line); None
    detects: a text that is not one JSON document but whose first line is, is JSON
    Lines. Returns the analyses in order (each with `line` set for JSON Lines), their
    metrics read for `judge`; raises AnalysisInputError naming `source`, the line and
    the field.
    """
    stripped = text.strip()
    if not stripped:
        raise AnalysisInputError(f"{source}: empty input, expected JSON or JSON Lines")
    if lines:
        return _read_lines(text, source, None, judge)
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError as whole_error:
        return _read_lines(text, source, whole_error, judge)
    if isinstance(doc, list):
        return [
            parse_analysis(item, where=f"{source} [{i}]", judge=judge) for i, item in enumerate(doc)
        ]
    return [parse_analysis(doc, where=source, judge=judge)]


def _read_lines(
    text: str, source: str, whole_error: json.JSONDecodeError | None, judge: str
) -> list[AnalysisInput]:
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)
    if whole_error is not None:
        try:
            json.loads(lines[first])
        except json.JSONDecodeError:
            # Not JSON Lines either: report the document's own syntax error.
            raise AnalysisInputError(
                f"{source} line {whole_error.lineno} column {whole_error.colno}: "
                f"invalid JSON: {whole_error.msg}"
            ) from None
    analyses = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnalysisInputError(
                f"{where} column {exc.colno}: invalid JSON: {exc.msg}"
            ) from None
        analyses.append(parse_analysis(doc, where=where, line=number, judge=judge))
    return analyses


def _observation_json(observation: Observation, kind: MetricKind) -> Any:
    if observation is None:
        return None
    if isinstance(observation, Counts):
        return {"total": observation.total, "failed": observation.failed}
    if isinstance(observation, Histogram):
        return {"buckets": list(observation.buckets)}
    value = float(observation)
    return None if math.isnan(value) else value


def analysis_to_json(
    ident: str | None,
    metrics: Sequence[MetricConfig],
    rounds: Iterable[RoundData],
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document `parse_analysis` reads back (histogram bounds from the data)."""
    rounds = list(rounds)
    out_metrics: dict[str, Any] = {}
    for config in metrics:
        entry: dict[str, Any] = {"kind": config.kind.value}
        entry.update(
            config.model_dump(exclude={"name", "kind"}, exclude_defaults=True, mode="json")
        )
        if config.kind is MetricKind.HISTOGRAM:
            for round_data in rounds:
                obs = round_data.canary.get(config.name) or round_data.baseline.get(config.name)
                if isinstance(obs, Histogram):
                    entry["bounds"] = ["+Inf" if math.isinf(b) else b for b in obs.bounds]
                    break
        out_metrics[config.name] = entry
    out_rounds = []
    for round_data in rounds:
        item: dict[str, Any] = {}
        for arm, observations in (("canary", round_data.canary), ("baseline", round_data.baseline)):
            kinds = {c.name: c.kind for c in metrics}
            item[arm] = {
                name: _observation_json(obs, kinds[name])
                for name, obs in observations.items()
                if name in kinds
            }
            by_pod: dict[str, dict[str, Any]] = {}
            for name in kinds:
                for pod, obs in round_data.pod_observations(arm, name).items():
                    by_pod.setdefault(pod, {})[name] = _observation_json(obs, kinds[name])
            if by_pod:
                item[arm]["pods"] = by_pod
        if round_data.error:
            item["error"] = round_data.error
        if round_data.start:
            item["start"] = round_data.start.isoformat()
        if round_data.end:
            item["end"] = round_data.end.isoformat()
        out_rounds.append(item)
    doc: dict[str, Any] = {"id": ident, "metrics": out_metrics, "rounds": out_rounds}
    if settings:
        doc["settings"] = dict(settings)
    return doc
