"""Move analyses between databases as versioned JSON (`canary export` / `canary import`).

The document::

    {"format": "canary-analyses", "version": 1, "exportedAt": "...", "canaryVersion": "0.1.0",
     "analyses": [{<analysis columns>, "rounds": [{<round columns>,
                   "observations": [...], "results": [...]}], "actions": [...]}]}

Everything replay and `canary show` read is carried: the recorded configuration, the
engine and judge state, every round's raw observations, results and actions. Row ids
(rounds, observations, actions) are not carried; the analysis id is, and it is what
makes an import idempotent: an analysis already present with at least as many rounds
is skipped, one present with fewer rounds is replaced by the newer export.

The whole document is validated before anything is written — every value with the
models the store, the engine and the judges use (verdicts, statuses, weights, the
recorded settings, the engine state, every observation as `Counts`, `Histogram` or
value) — and written in one transaction: a bad or incompatible file writes nothing,
and the error names the analysis, the round and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import ValidationError

from canary.config import AnalysisSettings, validation_problems
from canary.engine import EngineState
from canary.errors import NotFoundError, UsageError
from canary.judge import JUDGES
from canary.model import (
    ActionState,
    AnalysisStatus,
    Arm,
    Decision,
    MetricKind,
    Verdict,
    observation_from_json,
)
from canary.store.analyses import observation_kind
from canary.store.bulk import (
    add_analysis,
    delete_analysis,
    key_owners,
    load_full_many,
    missing_ids,
    rounds_done,
)
from canary.store.database import Session
from canary.store.tables import Action, Analysis, MetricResultRow, ObservationRow, Round

__all__ = [
    "FORMAT",
    "VERSION",
    "ImportReport",
    "export_analyses",
    "import_analyses",
    "parse_document",
]

FORMAT = "canary-analyses"
#: Who records analyses: the daemon, `canary analyze` and the Argo endpoint.
SOURCES = ("daemon", "analyze", "argo")
#: Bumped on an incompatible change of the document; import refuses other versions.
VERSION = 1

_ANALYSIS_FIELDS = (
    "id",
    "canary",
    "key",
    "source",
    "revision",
    "status",
    "verdict",
    "verdict_round",
    "reason",
    "judge",
    "settings",
    "engine_state",
    "judge_state",
    "snapshot",
    "weight",
    "step",
    "rounds_done",
    "started_at",
    "updated_at",
    "finished_at",
    "next_round_at",
)
_ROUND_FIELDS = (
    "index",
    "window_start",
    "window_end",
    "recorded_at",
    "weight",
    "step",
    "error",
    "verdict",
    "decision",
    "reasons",
    "score",
)
_OBSERVATION_FIELDS = ("metric", "arm", "kind", "delta", "snapshot")
_RESULT_FIELDS = ("metric", "verdict", "verdict_round", "reasons", "statistics", "evidence")
_ACTION_FIELDS = (
    "round_index",
    "kind",
    "from_weight",
    "to_weight",
    "state",
    "error",
    "created_at",
    "done_at",
)
_TIMES = frozenset(
    {
        "started_at",
        "updated_at",
        "finished_at",
        "next_round_at",
        "window_start",
        "window_end",
        "recorded_at",
        "created_at",
        "done_at",
    }
)
_REQUIRED_TIMES = frozenset({"started_at", "updated_at", "window_end", "recorded_at", "created_at"})


def _canary_version() -> str:
    try:
        return version("canary")
    except PackageNotFoundError:
        return "unknown"


def _dump(row: Any, fields: Sequence[str]) -> dict[str, Any]:
    out = {}
    for name in fields:
        value = getattr(row, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def export_analyses(session: Session, analysis_ids: Sequence[str]) -> dict[str, Any]:
    """The export document of these analyses (in this order); NotFoundError names unknown ids."""
    wanted = list(dict.fromkeys(analysis_ids))
    found = load_full_many(session, wanted)
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFoundError(f"no analysis with id {', '.join(repr(i) for i in missing)}")
    analyses = []
    for analysis_id in wanted:
        analysis = found[analysis_id]
        data = _dump(analysis, _ANALYSIS_FIELDS)
        data["rounds"] = [
            {
                **_dump(r, _ROUND_FIELDS),
                "observations": [_dump(o, _OBSERVATION_FIELDS) for o in r.observations],
                "results": [_dump(m, _RESULT_FIELDS) for m in r.results],
            }
            for r in analysis.rounds
        ]
        data["actions"] = [_dump(a, _ACTION_FIELDS) for a in analysis.actions]
        analyses.append(data)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exportedAt": datetime.now(UTC).isoformat(),
        "canaryVersion": _canary_version(),
        "analyses": analyses,
    }


# --------------------------------------------------------------------------- import


class _Invalid(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.round: Any = None  # the round's recorded index, when the problem is in one


def _one_of(value: Any, allowed: Any, where: str, *, optional: bool = False) -> None:
    """`value` must be one of `allowed` (strings), or None when `optional`."""
    if optional and value is None:
        return
    names = [str(a) for a in allowed]
    if value not in names:
        raise _Invalid(where, f"{value!r} is not one of {', '.join(names)}")


def _weight(value: Any, where: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise _Invalid(where, f"expected a weight from 0 to 100, got {value!r}")


def _observation(values: Mapping[str, Any], where: str) -> None:
    """An observation as the store writes it (`record_round`) and replay reads it."""
    _one_of(values["arm"], Arm, f"{where}.arm")
    _one_of(values["kind"], ("none", *MetricKind), f"{where}.kind")
    delta = values["delta"]
    if delta is not None and not isinstance(delta, Mapping):
        raise _Invalid(f"{where}.delta", "expected an object or null")
    if observation_kind(delta) != values["kind"]:
        raise _Invalid(f"{where}.delta", f"is not a {values['kind']} observation")
    if delta is None:
        return
    parts = {"": delta}
    pods = delta.get("pods")
    if pods is not None:
        if not isinstance(pods, Mapping):
            raise _Invalid(f"{where}.delta.pods", "expected an object")
        parts.update({f".pods.{pod}": obs for pod, obs in pods.items()})
    for suffix, data in parts.items():
        here = f"{where}.delta{suffix}"
        if not isinstance(data, Mapping):
            raise _Invalid(here, "expected an object")
        if isinstance(data.get("value"), str):
            data = {"value": data["value"].replace("Inf", "inf")}
        try:
            observation_from_json(data)
        except (TypeError, ValueError, KeyError) as exc:
            message = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
            raise _Invalid(here, message) from None


def _validate_analysis(analysis: Analysis, where: str) -> None:
    """The analysis columns as the store, the engine and the judges read them."""
    for name in ("id", "canary"):
        if not getattr(analysis, name).strip():
            raise _Invalid(f"{where}.{name}", "must not be empty")
    _one_of(analysis.source, SOURCES, f"{where}.source")
    _one_of(analysis.status, AnalysisStatus, f"{where}.status")
    _one_of(analysis.verdict, Verdict, f"{where}.verdict")
    _one_of(analysis.judge, JUDGES, f"{where}.judge")
    _weight(analysis.weight, f"{where}.weight")
    if analysis.verdict_round is not None and (
        isinstance(analysis.verdict_round, bool) or not isinstance(analysis.verdict_round, int)
    ):
        raise _Invalid(f"{where}.verdict_round", "expected an integer or null")
    try:
        AnalysisSettings.from_recorded(analysis.settings, analysis.judge)
    except ValidationError as exc:
        path, message = validation_problems(exc, ("settings",))[0]
        raise _Invalid(f"{where}.{path}", message) from None
    if analysis.engine_state:
        try:
            EngineState.from_json(analysis.engine_state)
        except (TypeError, ValueError, KeyError) as exc:
            raise _Invalid(f"{where}.engine_state", f"not an engine state ({exc})") from None


def _time(value: Any, where: str, required: bool) -> datetime | None:
    if value is None:
        if required:
            raise _Invalid(where, "required time is missing")
        return None
    if not isinstance(value, str):
        raise _Invalid(where, f"expected an ISO 8601 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(where, f"expected an ISO 8601 time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _columns(item: Any, fields: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise _Invalid(where, "expected an object")
    out = {}
    for name in fields:
        value = item.get(name)
        if name in _TIMES:
            value = _time(value, f"{where}.{name}", name in _REQUIRED_TIMES)
        out[name] = value
    return out


def _require(values: Mapping[str, Any], names: Sequence[str], kinds: type | tuple, where: str):  # type: ignore[no-untyped-def]
    for name in names:
        if not isinstance(values.get(name), kinds) or isinstance(values.get(name), bool):
            raise _Invalid(f"{where}.{name}", f"expected {_kind_name(kinds)}")


def _kind_name(kinds: type | tuple) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join({str: "a string", int: "an integer", dict: "an object"}[k] for k in kinds)


def _parse_analysis(item: Any, where: str) -> Analysis:
    values = _columns(item, _ANALYSIS_FIELDS, where)
    _require(values, ("id", "canary", "source", "status", "verdict", "judge"), str, where)
    _require(values, ("weight", "step", "rounds_done"), int, where)
    _require(values, ("settings",), dict, where)
    for name in ("engine_state", "judge_state", "snapshot"):
        values[name] = values[name] if isinstance(values[name], dict) else {}
    analysis = Analysis(**values)
    _validate_analysis(analysis, where)
    rounds = item.get("rounds", [])
    if not isinstance(rounds, list):
        raise _Invalid(f"{where}.rounds", "expected a list")
    seen: set[int] = set()
    for position, raw in enumerate(rounds):
        here = f"{where}.rounds[{position}]"
        try:
            analysis.rounds.append(_parse_round(raw, here, seen))
        except _Invalid as exc:
            if exc.round is None and isinstance(raw, Mapping):
                exc.round = raw.get("index")
            raise
    actions = item.get("actions", [])
    if not isinstance(actions, list):
        raise _Invalid(f"{where}.actions", "expected a list")
    for number, raw in enumerate(actions):
        here = f"{where}.actions[{number}]"
        action_values = _columns(raw, _ACTION_FIELDS, here)
        _require(action_values, ("kind", "state"), str, here)
        _require(action_values, ("to_weight",), int, here)
        _one_of(action_values["state"], ActionState, f"{here}.state")
        _weight(action_values["to_weight"], f"{here}.to_weight")
        _weight(action_values["from_weight"], f"{here}.from_weight", optional=True)
        analysis.actions.append(Action(**action_values))
    return analysis


def _parse_round(raw: Any, here: str, seen: set[int]) -> Round:
    round_values = _columns(raw, _ROUND_FIELDS, here)
    _require(round_values, ("index", "weight", "step"), int, here)
    _require(round_values, ("verdict",), str, here)
    if round_values["index"] < 0:
        raise _Invalid(
            f"{here}.index", f"expected a round index of 0 or more, got {round_values['index']}"
        )
    if round_values["index"] in seen:
        raise _Invalid(f"{here}.index", f"round {round_values['index']} appears twice")
    seen.add(round_values["index"])
    _weight(round_values["weight"], f"{here}.weight")
    _one_of(round_values["verdict"], Verdict, f"{here}.verdict")
    _one_of(round_values["decision"], Decision, f"{here}.decision", optional=True)
    round_values["reasons"] = round_values["reasons"] or []
    row = Round(**round_values)
    metrics: set[tuple[str, str]] = set()
    for kind, fields, table in (
        ("observations", _OBSERVATION_FIELDS, ObservationRow),
        ("results", _RESULT_FIELDS, MetricResultRow),
    ):
        children = raw.get(kind, [])
        if not isinstance(children, list):
            raise _Invalid(f"{here}.{kind}", "expected a list")
        for number, child in enumerate(children):
            child_where = f"{here}.{kind}[{number}]"
            child_values = _columns(child, fields, child_where)
            _require(child_values, ("metric",), str, child_where)
            if table is ObservationRow:
                _require(child_values, ("arm", "kind"), str, child_where)
                _observation(child_values, child_where)
                pair = (child_values["metric"], child_values["arm"])
                if pair in metrics:
                    raise _Invalid(
                        child_where, f"metric {pair[0]!r}, arm {pair[1]!r} appears twice"
                    )
                metrics.add(pair)
                row.observations.append(ObservationRow(**child_values))
            else:
                _require(child_values, ("verdict",), str, child_where)
                _one_of(child_values["verdict"], Verdict, f"{child_where}.verdict")
                for name, empty in (("reasons", []), ("statistics", {}), ("evidence", {})):
                    child_values[name] = child_values[name] or empty
                row.results.append(MetricResultRow(**child_values))
    return row


def parse_document(text: str, source: str = "input") -> list[Analysis]:
    """Validate an export document; UsageError naming the problem (nothing is written)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: not JSON: {exc}") from None
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        raise UsageError(f'{source}: not a canary export (expected "format": "{FORMAT}")')
    got = document.get("version")
    if got != VERSION:
        made_by = document.get("canaryVersion", "an unknown version of canary")
        raise UsageError(
            f"{source}: export format version {got!r} (written by canary {made_by}) is not "
            f"supported; this canary reads version {VERSION}"
        )
    items = document.get("analyses")
    if not isinstance(items, list):
        raise UsageError(f"{source}: analyses: expected a list")
    analyses = []
    ids: set[str] = set()
    for position, item in enumerate(items):
        try:
            analysis = _parse_analysis(item, f"analyses[{position}]")
        except _Invalid as exc:
            raise UsageError(f"{source}: {exc}{_context(item, exc.round)}") from None
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{source}: analyses[{position}]: {exc}{_context(item)}") from None
        if analysis.id in ids:
            raise UsageError(f"{source}: analyses[{position}]: id {analysis.id!r} appears twice")
        ids.add(analysis.id)
        analyses.append(analysis)
    return analyses


def _context(item: Any, round_index: Any = None) -> str:
    """`` (analysis ID, round N)`` for an error message, as far as they are known."""
    parts = []
    if isinstance(item, Mapping) and isinstance(item.get("id"), str) and item["id"]:
        parts.append(f"analysis {item['id']}")
    if round_index is not None:
        parts.append(f"round {round_index}")
    return f" ({', '.join(parts)}); nothing imported" if parts else "; nothing imported"


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def import_analyses(session: Session, analyses: Sequence[Analysis]) -> ImportReport:
    """Add parsed analyses in the caller's transaction; idempotent by analysis id.

    UsageError (the caller rolls back: nothing written) when an analysis' `key` is
    taken by a different analysis in this database.
    """
    report = ImportReport()
    ids = [a.id for a in analyses]
    existing = rounds_done(session, ids)
    taken = key_owners(session, [a.key for a in analyses if a.key])
    for analysis in analyses:
        owner = taken.get(analysis.key) if analysis.key else None
        if owner is not None and owner != analysis.id:
            raise UsageError(
                f"analysis {analysis.id} has key {analysis.key!r}, which analysis {owner} "
                "already uses in this database; nothing imported"
            )
        present = existing.get(analysis.id)
        if present is not None and present >= analysis.rounds_done:
            report.skipped.append(analysis.id)
            continue
        if present is not None:
            delete_analysis(session, analysis.id)
            report.replaced.append(analysis.id)
        else:
            report.imported.append(analysis.id)
        add_analysis(session, analysis)
    return report


def check_ids(session: Session, analysis_ids: Sequence[str]) -> None:
    """NotFoundError naming every id that is not stored."""
    missing = missing_ids(session, analysis_ids)
    if missing:
        raise NotFoundError(f"no analysis with id {', '.join(repr(i) for i in missing)}")
