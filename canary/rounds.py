"""The round pipeline shared by the daemon, the Argo endpoint and `canary analyze`.

One round = collect -> judge -> (daemon only: decide -> persist round + intended
action -> act -> mark the action) -> persist; each round's judging and deciding is
`canary.engine.step` (docs/architecture.md, "One round").

- `judge_round` is the judged-only path (Argo web metric, `canary analyze`): no
  traffic, no rollout state. The first round of an analysis only takes the counter
  snapshot (warm-up, stored as round index 0 without judgement); every later round is
  judged incrementally from the judge state stored with the analysis, and the round
  the engine says ends it (a FAIL, the budget) closes it in the same transaction.
  `close_judged` stores how `canary analyze` ends its window.
- `daemon_round` adds the engine and the router on top of the same steps.
- `apply_action` carries out a recorded (pending) action through a Router; it is
  idempotent, so the daemon also uses it to reconcile pending actions after a crash.

Database work runs in worker threads (`asyncio.to_thread`) so a slow commit never
stalls the event loop that schedules other analyses' rounds. No session is held
while Prometheus is queried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from canary import engine as rollout
from canary.config import AnalysisSettings, CanaryConfig, validation_problems
from canary.errors import (
    CanaryError,
    DriftError,
    JudgeStateError,
    RoundConflict,
    StoredDataError,
    TrafficError,
    UsageError,
)
from canary.judge import Judge, JudgeState, judged_bounds, make_judge
from canary.model import (
    ActionState,
    AnalysisStatus,
    Decision,
    Judgement,
    RoundData,
    Verdict,
)
from canary.ports import Collected, MetricSource, Router
from canary.store.analyses import (
    ActionIntent,
    JudgedRecord,
    close_analysis,
    detached_action,
    finish_analysis,
    get_action,
    get_analysis,
    halt_analysis,
    keyed_analysis,
    lock_analysis,
    mark_action,
    note_action_error,
    record_judged_round,
    record_round,
    save_rollout,
)
from canary.store.database import Session, Sessions
from canary.store.reads import LatestRound, analysis_row, latest_round
from canary.store.tables import Action, Analysis, utcnow

__all__ = [
    "ActionResult",
    "DaemonRoundResult",
    "RoundResult",
    "apply_action",
    "close_judged",
    "daemon_round",
    "ensure_analysis",
    "judge_round",
    "load_for_round",
    "open_analysis",
    "recorded_canary",
    "recorded_settings",
    "settings_dump",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- collecting


# --------------------------------------------------------------------------- settings


def settings_dump(canary: CanaryConfig) -> dict[str, Any]:
    """What an analysis records as its settings: the whole canary configuration."""
    return canary.model_dump(mode="json")


class _Recorded(Protocol):
    """What recorded settings are read from: an analysis row, ORM object or backtest."""

    id: str
    judge: str
    settings: Any


def recorded_settings(analysis: _Recorded) -> AnalysisSettings:
    """The analysis settings recorded when the analysis started, validated;
    StoredDataError names the stored key that no longer reads."""
    try:
        return AnalysisSettings.from_recorded(analysis.settings or {}, analysis.judge)
    except ValidationError as exc:
        path, message = validation_problems(exc, ("settings",))[0]
        raise StoredDataError(analysis.id, path, message) from None
    except (AttributeError, TypeError, ValueError) as exc:
        raise StoredDataError(analysis.id, "settings", str(exc)) from None


def recorded_canary(analysis: Analysis) -> CanaryConfig | None:
    """The canary configuration recorded with the analysis, if it was a whole canary."""
    try:
        return CanaryConfig.from_recorded(analysis.settings or {}, analysis.judge)
    except ValueError:
        return None


def ensure_analysis(
    sessions: Sessions,
    canary: CanaryConfig,
    *,
    key: str,
    source: str,
    revision: str | None = None,
    now: datetime | None = None,
) -> str:
    """The id of the analysis keyed `key`, created (judged only, no traffic) if new.

    Safe against a concurrent caller creating the same key (the key is unique).
    """
    created = _creation(canary, source, revision, now)
    return keyed_analysis(sessions, key, _analysis_id, **created)[0]


def _analysis_id(_session: Session, analysis_id: str) -> str:
    return analysis_id


def open_analysis(
    sessions: Sessions,
    canary: CanaryConfig,
    *,
    key: str,
    source: str,
    revision: str | None = None,
    now: datetime | None = None,
    admit: Callable[[Session], None] | None = None,
) -> tuple[_Loaded, bool]:
    """`ensure_analysis` and `load_for_round` in one transaction: what a round of the
    analysis keyed `key` reads first, and whether this call created the analysis
    (only once `admit(session)`, if given, returned: it raises to refuse)."""
    return keyed_analysis(
        sessions, key, _load, admit=admit, **_creation(canary, source, revision, now)
    )


def _creation(
    canary: CanaryConfig, source: str, revision: str | None, now: datetime | None
) -> dict[str, Any]:
    """`create_analysis` arguments of a judged-only analysis of `canary`."""
    return {
        "canary": canary.name,
        "source": source,
        "judge": canary.judge,
        "settings": settings_dump(canary),
        "revision": revision,
        "now": now,
    }


# --------------------------------------------------------------------------- judged rounds


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one judged round produced."""

    analysis_id: str
    index: int  # 0 is the warm-up snapshot
    judgement: Judgement | None  # None for a warm-up or a round whose queries failed
    warmup: bool
    data: RoundData
    final: bool = False
    closing: rollout.Closing | None = None  # this round ended the analysis
    #: The analysis as the next round reads it (`judge_round` passes it as `loaded`),
    #: from what this round's transaction stored; None when the analysis ended.
    after: _Loaded | None = None

    @property
    def error(self) -> str | None:
        return self.data.error

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict if self.judgement else Verdict.RUNNING


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A detached view of an analysis for one round (no session held while collecting)."""

    id: str
    canary: str
    judge: str
    status: AnalysisStatus
    settings: AnalysisSettings
    index: int  # the index this round will take
    snapshot: dict[str, Any]
    judge_state: dict[str, Any]
    engine_state: dict[str, Any]
    started_at: datetime
    weight: int
    step: int
    verdict: str
    verdict_round: int | None
    latest: LatestRound | None  # the latest stored round, None before the warm-up
    #: The judge and its typed state as the previous round in this process left them
    #: (`_after`), so a kept analysis is not rebuilt from `judge_state` every round;
    #: None: built from the stored fields (`_judge`).
    kept: tuple[Judge[Any], JudgeState | None] | None = None


def load_for_round(sessions: Sessions, analysis_id: str) -> _Loaded:
    """What a round reads before collecting; a caller that has just decided to run a
    round passes it to `judge_round` as `loaded`, so the analysis is not read twice."""
    with sessions.begin() as session:
        return _load(session, analysis_id)


def _load(session: Session, analysis_id: str) -> _Loaded:
    """`load_for_round` in the caller's transaction."""
    # The next index is read before the analysis row: a round committed between
    # the two reads (SQLite reads outside one snapshot) then leaves a newer
    # counter snapshot with the older index, which the window check or the
    # unique index refuses, never an older snapshot with the newer index (a
    # second round over the same window).
    latest = latest_round(session, analysis_id)
    analysis = analysis_row(session, analysis_id)
    return _Loaded(
        id=analysis.id,
        canary=analysis.canary,
        judge=analysis.judge,
        settings=recorded_settings(analysis),
        index=0 if latest is None else latest.index + 1,
        started_at=analysis.started_at,
        latest=latest,
        **_round_columns(analysis),
    )


def _round_columns(columns: Any) -> dict[str, Any]:
    """The analysis columns a round changes, from the stored row or from the round's
    UPDATE (`JudgedRecord`), which name them alike."""
    return {
        "status": AnalysisStatus(columns.status),
        "snapshot": dict(columns.snapshot or {}),
        "judge_state": dict(columns.judge_state or {}),
        "engine_state": dict(columns.engine_state or {}),
        "weight": columns.weight,
        "step": columns.step,
        "verdict": columns.verdict,
        "verdict_round": columns.verdict_round,
    }


def _check_window(loaded: _Loaded, at: datetime, min_window: timedelta) -> None:
    start = loaded.snapshot.get("at_unix")
    if start is None:
        return
    seconds = at.timestamp() - float(start)
    if seconds < min_window.total_seconds():
        raise RoundConflict(
            f"round {loaded.index} of analysis {loaded.id}: its window would be "
            f"{seconds:.3f}s (at least {min_window.total_seconds():g}s): a round was just recorded"
        )


def _step(
    loaded: _Loaded,
    judged: tuple[Judge[Any], JudgeState | None],
    data: RoundData,
    at: datetime,
    *,
    state: rollout.EngineState | None = None,
    final: bool | None = None,
) -> rollout.RoundStep:
    """`canary.engine.step` on the loaded analysis with its recorded judge and state
    (`_judge`)."""
    judge, judge_state = judged
    return rollout.step(
        judge,
        judge_state,
        data,
        at,
        loaded.settings,
        index=loaded.index,
        state=state,
        started_at=loaded.started_at,
        final=final,
    )


def _judge(loaded: _Loaded) -> tuple[Judge[Any], JudgeState | None]:
    """The recorded judge and its state: kept from the previous round, else built from
    the stored settings and `judge_state` (a typed state judges exactly as its stored
    form read back, tests/test_rounds.py)."""
    if loaded.kept is not None:
        return loaded.kept
    judge = make_judge(loaded.judge, loaded.settings.metrics, loaded.settings)
    return judge, _judge_state(judge, loaded)


def _judge_state(judge: Judge[Any], loaded: _Loaded) -> JudgeState | None:
    """The analysis's stored judge state, typed; None before its first judged round."""
    if not loaded.judge_state:
        return None
    try:
        return judge.read_state(loaded.judge_state)
    except JudgeStateError as exc:
        raise StoredDataError(loaded.id, f"judge_state.{exc.field}", exc.problem) from None


def _stored_state(step: rollout.RoundStep, loaded: _Loaded) -> dict[str, Any]:
    """The judge state to store with the round: the loaded one ({}) if not judged yet."""
    return loaded.judge_state if step.judge_state is None else step.judge_state.to_json()


async def _collect(
    source: MetricSource, canary: CanaryConfig, at: datetime, loaded: _Loaded
) -> Collected:
    started = time.perf_counter()
    try:
        collected = await source.collect(
            canary, at, loaded.snapshot, bounds=judged_bounds(loaded.judge_state)
        )
    except (CanaryError, OSError) as exc:  # the protocol says never, but be safe
        log.warning("collect failed for %s: %s", loaded.id, exc)
        collected = Collected(
            data=RoundData(canary={}, baseline={}, end=at, error=str(exc)),
            snapshot=loaded.snapshot,
        )
    from canary import telemetry

    telemetry.QUERY_SECONDS.observe(time.perf_counter() - started)
    return collected


def _record_judged(
    sessions: Sessions,
    loaded: _Loaded,
    collected: Collected,
    step: rollout.RoundStep,
    at: datetime,
    judge: Judge[Any],
) -> _Loaded | None:
    """Store the round; the analysis as the next round reads it (None if it ended)."""
    with sessions.begin() as session:
        # A round recorded meanwhile makes the insert of this index conflict (unique
        # per analysis and index): RoundConflict, nothing written.
        record = record_judged_round(
            session,
            loaded.id,
            index=loaded.index,
            data=collected.data,
            judgement=step.judgement,
            judge_state=_stored_state(step, loaded),
            snapshot=collected.snapshot,
            raw_snapshots=collected.raw,
            now=at,
        )
        closing = step.closing
        if closing is None:
            return _after(loaded, record, at, collected.data.error, judge, step)
        # The analysis is running: record_judged_round checked.
        close_analysis(
            session,
            loaded.id,
            closing.status,
            verdict=closing.verdict,
            reason=closing.reason,
            now=at,
        )
        return None


def _after(
    loaded: _Loaded,
    record: JudgedRecord,
    at: datetime,
    error: str | None,
    judge: Judge[Any],
    step: rollout.RoundStep,
) -> _Loaded:
    """What `load_for_round` would read once this round is committed: the analysis columns as
    the round's UPDATE returned them and the round itself as the latest; the judge
    and the state it stored kept typed."""
    return replace(
        loaded,
        index=loaded.index + 1,
        latest=LatestRound(loaded.index, at.astimezone(UTC), error),
        kept=(judge, step.judge_state),
        **_round_columns(record),
    )


def close_judged(
    sessions: Sessions, analysis_id: str, closing: rollout.Closing, now: datetime
) -> None:
    """Store how a judged-only analysis ended (`canary.engine.window_closing`)."""
    with sessions.begin() as session:
        close_analysis(
            session,
            analysis_id,
            closing.status,
            verdict=closing.verdict,
            reason=closing.reason,
            now=now,
        )


async def judge_round(
    sessions: Sessions,
    analysis_id: str,
    canary: CanaryConfig,
    source: MetricSource,
    at: datetime,
    *,
    final: bool | None = None,
    min_window: timedelta | None = None,
    loaded: _Loaded | None = None,
) -> RoundResult:
    """Collect and judge the next round of a judged-only analysis (Argo, analyze).

    The first round only takes the counter snapshot (warm-up, index 0, no judgement).
    `final=None` derives the budget from the recorded settings (max_rounds,
    max_duration); True forces the last round (neither PASS nor FAIL becomes
    INCONCLUSIVE). Raises NotFoundError for an unknown id and RoundConflict when the
    analysis has ended (its verdict stays as it ended), when a
    concurrent caller recorded this round first, or, with `min_window`, when the
    round's window (from the stored snapshot to `at`) would be shorter than that:
    a caller that raced another one must not judge a window of milliseconds (or a
    negative one). The recorded index is checked again when writing, so the check
    holds across processes too. `loaded` (`load_for_round`, or the previous round's
    `RoundResult.after`) saves the first read: a stale one (another process recorded
    a round or ended the analysis since) ends in RoundConflict when writing.
    """
    if loaded is None or loaded.id != analysis_id:
        loaded = await asyncio.to_thread(load_for_round, sessions, analysis_id)
    if loaded.status is not AnalysisStatus.RUNNING:
        raise RoundConflict(
            f"analysis {analysis_id} is {loaded.status.value}: an ended analysis takes no rounds"
        )
    if min_window is not None:
        _check_window(loaded, at, min_window)
    collected = await _collect(source, canary, at, loaded)
    judged = _judge(loaded)
    step = _step(loaded, judged, collected.data, at, final=final)
    after = await asyncio.to_thread(
        _record_judged, sessions, loaded, collected, step, at, judged[0]
    )
    warmup = loaded.index == 0
    return RoundResult(
        loaded.id,
        loaded.index,
        step.judgement,
        warmup,
        collected.data,
        step.final,
        step.closing,
        after,
    )


# --------------------------------------------------------------------------- acting


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What carrying out one action did."""

    action_id: int
    state: ActionState
    changed: bool = False
    error: str | None = None
    drift: bool = False
    earlier: bool = False  # carried out before this call (by a round or a reconcile)


def _finish_action(
    sessions: Sessions,
    action_id: int,
    state: ActionState,
    error: str | None,
    halt_reason: str | None,
    applied_at: datetime | None = None,
) -> bool:
    """Mark a pending action `state`; False when another call finished it meanwhile."""
    with sessions.begin() as session:
        action = get_action(session, action_id)
        if action.state != ActionState.PENDING.value:
            return False  # reconciled by someone else meanwhile
        mark_action(session, action, state, error=error)
        if state is ActionState.DONE:
            _start_step_clock(session, action, applied_at or utcnow())
        if halt_reason:
            analysis = get_analysis(session, action.analysis_id, for_update=True)
            # A promotion that could not be carried out is no promotion: halt instead.
            if analysis.status not in _ROLLED_BACK:
                halted = None
                if analysis.engine_state:
                    state = rollout.EngineState.from_json(analysis.engine_state)
                    halted = rollout.halt(state, halt_reason).to_json()
                halt_analysis(session, analysis, halt_reason, engine_state=halted)
        return True


def _start_step_clock(session: Session, action: Action, applied_at: datetime) -> None:
    """Record in the engine state that the action's weight is in place (its step starts)."""
    analysis = get_analysis(session, action.analysis_id, for_update=True)
    if not analysis.engine_state:
        return
    state = rollout.EngineState.from_json(analysis.engine_state)
    if state.weight != action.to_weight:
        return  # a later decision (or an operator) moved on meanwhile
    applied = rollout.weight_applied(state, action.kind, applied_at)
    if applied != state:
        save_rollout(analysis, engine_state=applied.to_json())


_ROLLED_BACK = {
    AnalysisStatus.ROLLED_BACK.value,
    AnalysisStatus.ABORTED.value,
    AnalysisStatus.INCONCLUSIVE.value,
}


def _note_action_error(sessions: Sessions, action_id: int, error: str) -> None:
    with sessions.begin() as session:
        note_action_error(session, action_id, error)


async def apply_action(
    sessions: Sessions, router: Router, action_id: int, *, applied_at: datetime | None = None
) -> ActionResult:
    """Carry out a pending action through `router` and mark it done (or failed).

    A `start` or `advance` action that took effect starts its step's clock at
    `applied_at` (default: now; the round that decided the action passes its own
    time), see `canary.engine.weight_applied`.

    Idempotent: the router records (analysis, action) with each write and skips a
    write whose target is already in place for the same pair, so re-applying after
    a crash never applies a step twice. A rollback is never skipped: it is forced
    over drift (sending all traffic to stable is always safe). Any other action
    meeting drift is marked failed and halts the analysis with the reason. Transient
    errors (API unreachable, conflicts) leave the action pending for a retry.
    """
    action = await asyncio.to_thread(detached_action, sessions, action_id)
    if action.state != ActionState.PENDING.value:
        return ActionResult(action_id, ActionState(action.state), earlier=True)
    is_rollback = action.to_weight == 0
    try:
        result = await router.set_weights(
            action.to_weight,
            analysis=action.analysis_id,
            step=action.id,
            by=f"canary {action.kind}",
            force=is_rollback,
        )
    except DriftError as exc:
        from canary import telemetry

        telemetry.DRIFT.inc()
        reason = f"halted: {exc}"
        await asyncio.to_thread(
            _finish_action, sessions, action_id, ActionState.FAILED, str(exc), reason
        )
        return ActionResult(action_id, ActionState.FAILED, error=str(exc), drift=True)
    except TrafficError as exc:
        log.warning("action %s on %s not applied yet: %s", action_id, action.analysis_id, exc)
        await asyncio.to_thread(_note_action_error, sessions, action_id, str(exc))
        return ActionResult(action_id, ActionState.PENDING, error=str(exc))
    finished = await asyncio.to_thread(
        _finish_action, sessions, action_id, ActionState.DONE, None, None, applied_at
    )
    return ActionResult(action_id, ActionState.DONE, changed=result.changed, earlier=not finished)


# --------------------------------------------------------------------------- daemon rounds


@dataclass(frozen=True, slots=True)
class DaemonRoundResult:
    """A daemon round: the judged round plus the engine's decision and the action."""

    round: RoundResult
    decision: Decision | None  # None for a successful warm-up (no decision taken)
    reason: str
    state: rollout.EngineState | None
    action: ActionResult | None = None

    @property
    def status(self) -> AnalysisStatus | None:
        return self.state.status if self.state else None


def _record_daemon(
    sessions: Sessions,
    loaded: _Loaded,
    collected: Collected,
    step: rollout.RoundStep,
    at: datetime,
) -> int | None:
    """Persist the round, the engine state and the intended action in one transaction."""
    judgement, outcome = step.judgement, step.outcome
    with sessions.begin() as session:
        analysis = lock_analysis(session, loaded.id)  # a recorded index conflicts on insert
        if analysis.status != loaded.status.value:
            raise RoundConflict(
                f"analysis {loaded.id} became {analysis.status} during round {loaded.index}"
            )
        action = None
        if outcome is not None and outcome.changes_traffic:
            assert outcome.weight is not None
            action = ActionIntent(
                kind=rollout.ACTION_KINDS.get(outcome.decision, outcome.decision.value),
                to_weight=outcome.weight,
                from_weight=loaded.weight,
            )
        _row, action_row = record_round(
            session,
            analysis,
            index=loaded.index,
            data=collected.data,
            judgement=judgement,
            judge_state=_stored_state(step, loaded),
            snapshot=collected.snapshot,
            raw_snapshots=collected.raw,
            decision=outcome.decision if outcome else None,
            weight=outcome.state.weight if outcome else loaded.weight,
            step=outcome.state.step if outcome else loaded.step,
            engine_state=outcome.state.to_json() if outcome else None,
            action=action,
            now=at,
        )
        if outcome is not None and step.finished:
            status = outcome.state.status
            verdict = rollout.stored_verdict(status, judgement)
            finish_analysis(
                session, analysis, status, reason=outcome.reason, verdict=verdict, now=at
            )
        return action_row.id if action_row is not None else None


async def daemon_round(
    sessions: Sessions,
    analysis_id: str,
    canary: CanaryConfig,
    source: MetricSource,
    router: Router,
    at: datetime,
) -> DaemonRoundResult:
    """One daemon round: collect -> judge -> decide -> persist round + action -> act.

    Only a RUNNING analysis takes rounds (UsageError otherwise). The first round is
    the warm-up snapshot; if its queries fail it still counts as a failed round for
    the engine's failed-round limit. The engine state lives in
    `analysis.engine_state`. Raises RoundConflict when another process recorded the
    round first (nothing is acted on then).
    """
    loaded = await asyncio.to_thread(load_for_round, sessions, analysis_id)
    if loaded.status is not AnalysisStatus.RUNNING:
        raise UsageError(f"analysis {analysis_id} is {loaded.status.value}, not running")
    if not loaded.engine_state:
        raise UsageError(f"analysis {analysis_id} has no engine state (not a daemon analysis)")
    state = rollout.EngineState.from_json(loaded.engine_state)
    collected = await _collect(source, canary, at, loaded)
    step = _step(loaded, _judge(loaded), collected.data, at, state=state)
    action_id = await asyncio.to_thread(_record_daemon, sessions, loaded, collected, step, at)
    warmup = loaded.index == 0
    result = RoundResult(
        loaded.id, loaded.index, step.judgement, warmup, collected.data, step.final
    )
    outcome = step.outcome
    action = None
    if action_id is not None:
        action = await apply_action(sessions, router, action_id, applied_at=at)
    if outcome is None:
        return DaemonRoundResult(result, None, "warm-up: counter snapshot taken", state, action)
    return DaemonRoundResult(result, outcome.decision, outcome.reason, outcome.state, action)
