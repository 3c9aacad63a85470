"""The few transactions the rest of canary needs on analyses, rounds and actions.

Callers own the session and its transaction (`with sessions.begin() as session:`),
so a round, its observations, its results and the intended action are committed
together — or not at all (persist before acting, docs/architecture.md). The few
functions that take the sessionmaker (`keyed_analysis`, `detached_action`)
run their own short transactions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Integer, bindparam, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer, selectinload

from canary.errors import NotFoundError, RoundConflict, StoredDataError, UsageError
from canary.model import (
    ActionState,
    AnalysisStatus,
    Arm,
    Decision,
    Judgement,
    RoundData,
    Verdict,
    observation_to_json,
    stored_observation,
)
from canary.store.database import Sessions
from canary.store.tables import Action, Analysis, MetricResultRow, ObservationRow, Round, utcnow

T = TypeVar("T")

__all__ = [
    "ActionIntent",
    "JudgedRecord",
    "add_action",
    "close_analysis",
    "create_analysis",
    "detached_action",
    "finish_analysis",
    "get_action",
    "get_analysis",
    "halt_analysis",
    "keyed_analysis",
    "list_analyses",
    "lock_analysis",
    "mark_action",
    "new_analysis_id",
    "note_action_error",
    "pending_actions",
    "record_judged_round",
    "record_round",
    "round_data",
    "save_rollout",
    "unreadable_columns",
]


@dataclass(frozen=True, slots=True)
class ActionIntent:
    """A traffic change to record as pending (with its round, or by an operator)."""

    kind: str  # start | advance | promote | rollback | abort
    to_weight: int
    from_weight: int | None = None


@dataclass(frozen=True, slots=True)
class JudgedRecord:
    """A recorded judged round's id and the analysis columns its UPDATE returned."""

    round_id: int
    status: str
    verdict: str
    verdict_round: int | None
    snapshot: dict[str, Any]
    judge_state: dict[str, Any]
    engine_state: dict[str, Any]
    weight: int
    step: int


def new_analysis_id(canary: str) -> str:
    """A readable, globally unique id: ``checkout-3f9a1c2b7d``."""
    return f"{canary}-{uuid.uuid4().hex[:10]}"


def create_analysis(
    session: Session,
    *,
    canary: str,
    source: str,
    judge: str,
    settings: Mapping[str, Any],
    key: str | None = None,
    revision: str | None = None,
    weight: int = 0,
    status: AnalysisStatus = AnalysisStatus.RUNNING,
    now: datetime | None = None,
    analysis_id: str | None = None,
) -> Analysis:
    """A new analysis row, flushed."""
    now = now or utcnow()
    analysis = Analysis(
        id=analysis_id or new_analysis_id(canary),
        canary=canary,
        key=key,
        source=source,
        revision=revision,
        status=status.value,
        verdict=Verdict.RUNNING.value,
        judge=judge,
        settings=dict(settings),
        engine_state={},
        judge_state={},
        snapshot={},
        weight=weight,
        step=0,
        rounds_done=0,
        started_at=now,
        updated_at=now,
    )
    session.add(analysis)
    session.flush()
    return analysis


def get_analysis(session: Session, analysis_id: str, *, for_update: bool = False) -> Analysis:
    query = select(Analysis).where(Analysis.id == analysis_id)
    if for_update:
        query = query.with_for_update()
    analysis = session.scalars(query).one_or_none()
    if analysis is None:
        raise NotFoundError(f"no analysis with id {analysis_id!r}")
    return analysis


def _take_sqlite_write_lock(session: Session, analysis_id: str) -> None:
    """SQLite has no row locks, and pysqlite begins a transaction only at the first
    write: a no-op update takes the database's write lock now, so nothing the
    transaction reads from here on can change before it commits. Only for writers:
    readers in WAL mode never wait and must not make writers wait."""
    session.execute(update(Analysis).where(Analysis.id == analysis_id).values(id=Analysis.id))


def lock_analysis(session: Session, analysis_id: str) -> Analysis:
    """The analysis row locked for update, its JSON columns left unloaded.

    Recording a round overwrites the judge state, snapshot and engine state without
    reading them; decoding the whole configuration again would cost more than the
    round's own statements. A deferred column that is read is loaded on access.
    """
    if session.get_bind().dialect.name == "sqlite":
        _take_sqlite_write_lock(session, analysis_id)
    query = (
        select(Analysis)
        .where(Analysis.id == analysis_id)
        .options(
            defer(Analysis.settings),
            defer(Analysis.engine_state),
            defer(Analysis.judge_state),
            defer(Analysis.snapshot),
        )
        .with_for_update()
    )
    analysis = session.scalars(query).one_or_none()
    if analysis is None:
        raise NotFoundError(f"no analysis with id {analysis_id!r}")
    return analysis


def _id_by_key(session: Session, key: str) -> str | None:
    return session.scalar(select(Analysis.id).where(Analysis.key == key))


def keyed_analysis(
    sessions: Sessions,
    key: str,
    read: Callable[[Session, str], T],
    *,
    admit: Callable[[Session], None] | None = None,
    **create: Any,
) -> tuple[T, bool]:
    """`read(session, id)` of the analysis keyed `key` and whether this call created it,
    in one transaction: found by its key, or created with `create_analysis(**create)`
    once `admit(session)` (if given) returned (it raises to refuse). A concurrent
    caller creating the same key first makes the insert conflict (the key is unique):
    it is then found and read in a second transaction."""
    try:
        with sessions.begin() as session:
            found = _id_by_key(session, key)
            if found is not None:
                return read(session, found), False
            if admit is not None:
                admit(session)
            return read(session, create_analysis(session, key=key, **create).id), True
    except IntegrityError:
        with sessions.begin() as session:
            found = _id_by_key(session, key)
            if found is None:
                raise
            return read(session, found), False


def list_analyses(
    session: Session,
    *,
    canary: str | None = None,
    since: datetime | None = None,
    verdict: str | None = None,
    statuses: Sequence[str] | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> list[Analysis]:
    """Analyses newest first, filtered (every filter is part of the SQL query)."""
    query = select(Analysis).order_by(Analysis.started_at.desc(), Analysis.id)
    if canary:
        query = query.where(Analysis.canary == canary)
    if source:
        query = query.where(Analysis.source == source)
    if since:
        query = query.where(Analysis.started_at >= since)
    if verdict:
        query = query.where(Analysis.verdict == verdict)
    if statuses:
        query = query.where(Analysis.status.in_(list(statuses)))
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


# Plain table inserts (no ORM bulk machinery) for the rows of a round.
_ROUNDS = Round.__table__
_OBSERVATIONS = ObservationRow.__table__
_RESULTS = MetricResultRow.__table__
_ROUND_INSERT = insert(_ROUNDS).returning(_ROUNDS.c.id)
_OBSERVATION_INSERT = insert(_OBSERVATIONS)
_RESULT_INSERT = insert(_RESULTS)


def record_round(
    session: Session,
    analysis: Analysis,
    *,
    index: int,
    data: RoundData,
    judgement: Judgement | None,
    judge_state: Mapping[str, Any],
    snapshot: Mapping[str, Any],
    raw_snapshots: Mapping[str, Mapping[str, Any]] | None = None,
    decision: Decision | None = None,
    weight: int | None = None,
    step: int | None = None,
    engine_state: Mapping[str, Any] | None = None,
    action: ActionIntent | None = None,
    now: datetime | None = None,
) -> tuple[int, Action | None]:
    """Store one round with its observations, results and intended action.

    Also advances the analysis' running state (judge state, counter snapshot, verdict).
    Returns the new round's id and the pending action row (None without `action`).
    `raw_snapshots[metric][arm]` is the raw per-series counter snapshot for audit.
    Raises RoundConflict when (analysis, index) exists already; the caller then rolls
    its transaction back.
    """
    now = now or utcnow()
    weight = analysis.weight if weight is None else weight
    step = analysis.step if step is None else step
    round_id = _insert_round(
        session,
        analysis.id,
        index=index,
        data=data,
        judgement=judgement,
        raw_snapshots=raw_snapshots,
        decision=decision,
        weight=weight,
        step=step,
        now=now,
    )
    action_row = None
    if action is not None:
        action_row = _action_row(analysis.id, action, index, weight, now)
        session.add(action_row)
        session.flush()  # the action's id, for the caller to carry it out

    analysis.rounds_done = max(analysis.rounds_done, index)
    analysis.weight = weight
    analysis.step = step
    if engine_state is not None:
        analysis.engine_state = dict(engine_state)
    for column, value in _round_state(judgement, judge_state, snapshot, now).items():
        setattr(analysis, column, value)
    return round_id, action_row


def record_judged_round(
    session: Session,
    analysis_id: str,
    *,
    index: int,
    data: RoundData,
    judgement: Judgement | None,
    judge_state: Mapping[str, Any],
    snapshot: Mapping[str, Any],
    raw_snapshots: Mapping[str, Mapping[str, Any]] | None = None,
    now: datetime | None = None,
) -> JudgedRecord:
    """`record_round` for a judged-only round (no decision, weight or action), without
    reading the analysis: one UPDATE of its running state comes first, which locks
    its row (on SQLite: takes the database's write lock), then the round's inserts.

    Returns the round's id and the analysis columns as the UPDATE left them (what
    the next round reads). NotFoundError for an unknown analysis; RoundConflict when
    the analysis is no longer running (an ended analysis keeps the verdict it ended
    with) or (analysis, index) exists already (the caller's transaction then rolls back).
    """
    now = now or utcnow()
    params = {f"new_{k}": v for k, v in _round_state(judgement, judge_state, snapshot, now).items()}
    params.update(analysis_id=analysis_id, running=AnalysisStatus.RUNNING.value, new_index=index)
    statement = _JUDGED_UPDATE[judgement is not None]
    row = session.connection().execute(statement, params).first()
    if row is None:
        status = session.scalar(select(Analysis.status).where(Analysis.id == analysis_id))
        if status is None:
            raise NotFoundError(f"no analysis with id {analysis_id!r}")
        raise RoundConflict(
            f"analysis {analysis_id} is {status}: an ended analysis takes no rounds"
        )
    round_id = _insert_round(
        session,
        analysis_id,
        index=index,
        data=data,
        judgement=judgement,
        raw_snapshots=raw_snapshots,
        decision=None,
        weight=row.weight,
        step=row.step,
        now=now,
    )
    return JudgedRecord(round_id, *row)


def _judged_update(with_verdict: bool) -> Any:
    """The UPDATE of `record_judged_round`, built once (with or without the verdict
    columns): building a statement costs more than SQLite's work on it."""
    table = Analysis.__table__
    columns = ["judge_state", "snapshot", "updated_at"]
    if with_verdict:
        columns += ["verdict", "verdict_round", "reason"]
    values: dict[str, Any] = {
        name: bindparam(f"new_{name}", type_=table.c[name].type) for name in columns
    }
    index = bindparam("new_index", type_=Integer)
    values["rounds_done"] = case((table.c.rounds_done > index, table.c.rounds_done), else_=index)
    return (
        update(table)
        .where(table.c.id == bindparam("analysis_id"), table.c.status == bindparam("running"))
        .values(values)
        .returning(*(table.c[field.name] for field in fields(JudgedRecord)[1:]))
    )


_JUDGED_UPDATE = {False: _judged_update(False), True: _judged_update(True)}


def _round_state(
    judgement: Judgement | None,
    judge_state: Mapping[str, Any],
    snapshot: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The analysis columns a recorded round sets (besides rounds done, weight, step)."""
    values: dict[str, Any] = {
        "judge_state": dict(judge_state),
        "snapshot": dict(snapshot),
        "updated_at": now,
    }
    if judgement:
        values["verdict"] = judgement.verdict.value
        values["verdict_round"] = judgement.round
        values["reason"] = "; ".join(judgement.reasons) or None
    return values


def _insert_round(
    session: Session,
    analysis_id: str,
    *,
    index: int,
    data: RoundData,
    judgement: Judgement | None,
    raw_snapshots: Mapping[str, Mapping[str, Any]] | None,
    decision: Decision | None,
    weight: int,
    step: int,
    now: datetime,
) -> int:
    """Insert the round row, its observations and its results; the round's id."""
    verdict = judgement.verdict if judgement else Verdict.RUNNING
    round_values = {
        "analysis_id": analysis_id,
        "index": index,
        "window_start": data.start,
        "window_end": data.end or now,
        "recorded_at": now,
        "weight": weight,
        "step": step,
        "error": data.error,
        "verdict": verdict.value,
        "decision": decision.value if decision else None,
        "reasons": list(judgement.reasons) if judgement else [],
        "score": judgement.score if judgement else None,
    }
    # No savepoint here: pysqlite does not open a transaction for SAVEPOINT, so SQLite
    # committed the round alone at its RELEASE (another reader, or a crash, saw the
    # round without its observations, action and the analysis' new snapshot). After a
    # conflict the caller's transaction is unusable and rolls back as a whole.
    connection = session.connection()  # Core statements: no ORM unit of work for these rows
    try:
        round_id = connection.execute(_ROUND_INSERT, round_values).scalar_one()
    except IntegrityError as exc:
        raise RoundConflict(f"round {index} of analysis {analysis_id} is recorded already") from exc
    # Core inserts, one statement per table: no ORM object per row. The JSON columns
    # are encoded once, by the engine's serializer (which also replaces NaN/Inf).
    observations = []
    for arm in Arm:
        for metric, observation in data.arm(arm).items():
            raw = (raw_snapshots or {}).get(metric, {}).get(arm.value)
            delta = observation_to_json(observation)
            by_pod = data.pod_observations(arm, metric)
            if delta is not None and by_pod:  # the per-pod breakdown, for replay
                delta["pods"] = {pod: observation_to_json(obs) for pod, obs in by_pod.items()}
            observations.append(
                {
                    "round_id": round_id,
                    "metric": metric,
                    "arm": arm.value,
                    "kind": observation_kind(delta),
                    "delta": delta,
                    "snapshot": raw,
                }
            )
    if observations:
        connection.execute(_OBSERVATION_INSERT, observations)
    if judgement and judgement.metrics:
        connection.execute(
            _RESULT_INSERT,
            [
                {
                    "round_id": round_id,
                    "metric": result.name,
                    "verdict": result.verdict.value,
                    "verdict_round": result.round,
                    "reasons": list(result.reasons),
                    "statistics": dict(result.statistics),
                    "evidence": dict(result.evidence[-1]) if result.evidence else {},
                }
                for result in judgement.metrics.values()
            ],
        )
    return round_id


def observation_kind(data: Mapping[str, Any] | None) -> str:
    """The `kind` stored with an observation: none, counts, histogram or value."""
    if data is None:
        return "none"
    if "buckets" in data:
        return "histogram"
    return "counts" if "total" in data else "value"


def _action_row(
    analysis_id: str,
    intent: ActionIntent,
    round_index: int | None,
    weight: int,
    now: datetime,
) -> Action:
    return Action(
        analysis_id=analysis_id,
        round_index=round_index,
        kind=intent.kind,
        from_weight=intent.from_weight if intent.from_weight is not None else weight,
        to_weight=intent.to_weight,
        state=ActionState.PENDING.value,
        created_at=now,
    )


def add_action(
    session: Session, analysis: Analysis, intent: ActionIntent, *, now: datetime | None = None
) -> Action:
    """Record an operator's traffic change (no round) as pending; flushed, so it has an id.

    `from_weight` defaults to the analysis' current weight.
    """
    action = _action_row(analysis.id, intent, None, analysis.weight, now or utcnow())
    session.add(action)
    session.flush()
    return action


def mark_action(
    session: Session, action: Action, state: ActionState, *, error: str | None = None
) -> None:
    action.state = state.value
    action.error = error
    action.done_at = utcnow()


def get_action(session: Session, action_id: int) -> Action:
    """An action by id; UsageError for an unknown id."""
    action = session.get(Action, action_id)
    if action is None:
        raise UsageError(f"no action with id {action_id}")
    return action


def detached_action(sessions: Sessions, action_id: int) -> Action:
    """An action by id, read in its own transaction and detached from it."""
    with sessions.begin() as session:
        action = get_action(session, action_id)
        session.expunge(action)
        return action


def note_action_error(session: Session, action_id: int, error: str) -> None:
    """Record why a pending action could not be carried out yet (it stays pending)."""
    action = session.get(Action, action_id)
    if action is not None and action.state == ActionState.PENDING.value:
        action.error = error


def pending_actions(session: Session, analysis_id: str | None = None) -> list[Action]:
    query = select(Action).where(Action.state == ActionState.PENDING.value).order_by(Action.id)
    if analysis_id:
        query = query.where(Action.analysis_id == analysis_id)
    return list(session.scalars(query))


def finish_analysis(
    session: Session,
    analysis: Analysis,
    status: AnalysisStatus,
    *,
    reason: str | None = None,
    verdict: Verdict | None = None,
    now: datetime | None = None,
) -> None:
    for column, value in _finished(status, reason, verdict, now or utcnow()).items():
        setattr(analysis, column, value)


def _finished(
    status: AnalysisStatus, reason: str | None, verdict: Verdict | None, now: datetime
) -> dict[str, Any]:
    """The analysis columns `finish_analysis` and `close_analysis` set."""
    values: dict[str, Any] = {"status": status.value, "updated_at": now}
    if verdict is not None:
        values["verdict"] = verdict.value
    if reason:
        values["reason"] = reason
    if status.is_final:
        values["finished_at"] = now
        values["next_round_at"] = None
    return values


def save_rollout(
    analysis: Analysis,
    *,
    engine_state: Mapping[str, Any],
    weight: int | None = None,
    next_round_at: datetime | None = None,
) -> None:
    """Store a daemon analysis' new engine state, and its weight and next round if given."""
    analysis.engine_state = dict(engine_state)
    if weight is not None:
        analysis.weight = weight
    if next_round_at is not None:
        analysis.next_round_at = next_round_at


def halt_analysis(
    session: Session,
    analysis: Analysis,
    reason: str,
    *,
    engine_state: Mapping[str, Any] | None = None,
) -> None:
    """Halt an analysis at its weight for `reason` (no longer finished, if it was)."""
    if engine_state is not None:
        analysis.engine_state = dict(engine_state)
    finish_analysis(session, analysis, AnalysisStatus.HALTED, reason=reason)
    analysis.finished_at = None


def close_analysis(
    session: Session,
    analysis_id: str,
    status: AnalysisStatus,
    *,
    verdict: Verdict | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> None:
    """`finish_analysis` by id, as one UPDATE that loads no row: in the transaction that
    recorded the analysis's last round, it takes no second lock."""
    values = _finished(status, reason, verdict, now or utcnow())
    result = session.execute(update(Analysis).where(Analysis.id == analysis_id).values(values))
    if result.rowcount == 0:
        raise NotFoundError(f"no analysis with id {analysis_id!r}")


def load_analysis_full(session: Session, analysis_id: str) -> Analysis:
    """An analysis with its rounds, observations, results and actions loaded."""
    query = (
        select(Analysis)
        .where(Analysis.id == analysis_id)
        .options(
            selectinload(Analysis.rounds).selectinload(Round.observations),
            selectinload(Analysis.rounds).selectinload(Round.results),
            selectinload(Analysis.actions),
        )
    )
    try:
        analysis = session.scalars(query).one_or_none()
    except (TypeError, ValueError) as exc:
        raise unreadable_columns(session, analysis_id, exc) from None
    if analysis is None:
        raise NotFoundError(f"no analysis with id {analysis_id!r}")
    return analysis


def unreadable_columns(session: Session, analysis_id: str, error: Exception) -> StoredDataError:
    """The StoredDataError for an analysis whose rows failed to load with `error`: a
    value its column's type cannot read (a time or JSON text edited by hand in SQLite),
    named by the first such column (``table.column``)."""
    own = {
        Analysis: Analysis.id == analysis_id,
        Round: Round.analysis_id == analysis_id,
        Action: Action.analysis_id == analysis_id,
    }
    queries = [select(c).where(where) for table, where in own.items() for c in table.__table__.c]
    for table in (ObservationRow, MetricResultRow):
        queries += [
            select(c).join(Round, Round.id == table.round_id).where(own[Round])
            for c in table.__table__.c
        ]
    for query in queries:
        try:
            session.execute(query).all()
        except (TypeError, ValueError):
            column = query.selected_columns[0]
            where = f"{column.table.name}.{column.key}"
            return StoredDataError(analysis_id, where, f"a value cannot be read: {error}")
    return StoredDataError(analysis_id, "stored rows", f"a value cannot be read: {error}")


def round_data(row: Round) -> RoundData:
    """The judges' view of a stored round (for replay); StoredDataError names the
    observation that cannot be read."""
    sides: dict[str, dict[str, Any]] = {Arm.CANARY.value: {}, Arm.BASELINE.value: {}}
    pods: dict[str, dict[str, dict[str, Any]]] = {}
    for observation in row.observations:
        where = f"round {row.index}, observation {observation.metric!r} ({observation.arm})"
        if observation.arm not in sides:
            raise StoredDataError(row.analysis_id, where, "arm is not canary or baseline")
        delta = observation.delta
        part = "delta"
        try:
            sides[observation.arm][observation.metric] = stored_observation(delta)
            if isinstance(delta, dict) and isinstance(delta.get("pods"), dict):
                by_pod = {}
                for pod, obs in delta["pods"].items():
                    part = f"delta.pods.{pod}"
                    by_pod[pod] = stored_observation(obs)
                pods.setdefault(observation.arm, {})[observation.metric] = by_pod
        except ValueError as exc:
            raise StoredDataError(row.analysis_id, f"{where} {part}", str(exc)) from None
    return RoundData(
        canary=sides[Arm.CANARY.value],
        baseline=sides[Arm.BASELINE.value],
        start=row.window_start,
        end=row.window_end,
        error=row.error,
        pods=pods,
    )
