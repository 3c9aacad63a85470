"""Operator operations on analyses: start, pause, resume, abort, promote, status.

Shared by the CLI (`canary start|pause|resume|abort|promote|status`) and the REST
API. They only touch the store and the pure engine: a traffic change is recorded as
a *pending action*, which the daemon holding the canary's lease carries out within
a few seconds (and which survives a crash: persist before acting). Invalid transitions raise
UsageError with a one-line reason; unknown ids NotFoundError.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from canary import engine as rollout
from canary.config import Config
from canary.errors import UsageError
from canary.model import AnalysisStatus
from canary.rounds import recorded_settings, settings_dump
from canary.store.analyses import (
    ActionIntent,
    add_action,
    create_analysis,
    finish_analysis,
    get_analysis,
    list_analyses,
    pending_actions,
    save_rollout,
)
from canary.store.database import Session, Sessions
from canary.store.tables import Analysis, utcnow

__all__ = [
    "ACTIVE",
    "ControlResult",
    "abort_analysis",
    "active_analysis",
    "pause_analysis",
    "promote_analysis",
    "resume_analysis",
    "start_analysis",
    "status",
]

#: Statuses of an analysis that still owns its canary's traffic.
ACTIVE = (AnalysisStatus.RUNNING.value, AnalysisStatus.PAUSED.value, AnalysisStatus.HALTED.value)


@dataclass(frozen=True, slots=True)
class ControlResult:
    """The outcome of an operator operation."""

    analysis_id: str
    status: AnalysisStatus
    weight: int
    message: str
    action_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "analysisId": self.analysis_id,
            "status": self.status.value,
            "weight": self.weight,
            "message": self.message,
            "actionId": self.action_id,
        }


def active_analysis(session: Session, canary: str) -> Analysis | None:
    """The daemon analysis of `canary` that is running, paused or halted, if any."""
    found = list_analyses(session, canary=canary, statuses=ACTIVE)
    found = [a for a in found if a.source == "daemon"]
    return found[0] if found else None


def start_analysis(
    sessions: Sessions,
    config: Config,
    canary_name: str,
    revision: str | None = None,
    now: datetime | None = None,
) -> str:
    """Start a daemon analysis of a configured canary; returns the analysis id.

    Records the first step's weight as a pending action for the daemon. Refuses
    when the canary already has a running, paused or halted analysis.
    """
    canary = config.get_canary(canary_name)
    now = now or utcnow()
    with sessions.begin() as session:
        existing = active_analysis(session, canary.name)
        if existing is not None:
            raise UsageError(
                f"canary {canary.name!r} already has an active analysis {existing.id} "
                f"({existing.status}); abort it or wait for it to finish"
            )
        state, first_weight = rollout.start(canary.settings(), now)
        analysis = create_analysis(
            session,
            canary=canary.name,
            source="daemon",
            judge=canary.judge,
            settings=settings_dump(canary),
            revision=revision,
            weight=0,
            now=now,
        )
        add_action(session, analysis, ActionIntent("start", first_weight))
        save_rollout(analysis, engine_state=state.to_json(), weight=first_weight, next_round_at=now)
        return analysis.id


def _load(session: Session, analysis_id: str) -> tuple[Analysis, rollout.EngineState]:
    analysis = get_analysis(session, analysis_id, for_update=True)
    if analysis.source != "daemon" or not analysis.engine_state:
        raise UsageError(
            f"analysis {analysis_id} is a judged-only analysis ({analysis.source}); "
            "it moves no traffic and cannot be paused, resumed, aborted or promoted"
        )
    return analysis, rollout.EngineState.from_json(analysis.engine_state)


def _operate(
    sessions: Sessions, analysis_id: str, op: rollout.ManualOp, now: datetime | None
) -> ControlResult:
    now = now or utcnow()
    with sessions.begin() as session:
        analysis, state = _load(session, analysis_id)
        try:
            outcome = rollout.command(state, op, now, recorded_settings(analysis))
        except ValueError as exc:
            raise UsageError(f"cannot {op} analysis {analysis_id}: {exc}") from None
        action_id = None
        if outcome.weight is not None:
            action_id = add_action(session, analysis, ActionIntent(op, outcome.weight)).id
        running = outcome.state.status is AnalysisStatus.RUNNING
        save_rollout(
            analysis,
            engine_state=outcome.state.to_json(),
            weight=outcome.weight,
            next_round_at=now if running else None,
        )
        finish_analysis(session, analysis, outcome.state.status, reason=outcome.reason, now=now)
        return ControlResult(
            analysis.id, outcome.state.status, analysis.weight, outcome.reason, action_id
        )


def pause_analysis(
    sessions: Sessions, analysis_id: str, now: datetime | None = None
) -> ControlResult:
    """Pause a running analysis: no rounds, weights kept."""
    return _operate(sessions, analysis_id, "pause", now)


def resume_analysis(
    sessions: Sessions, analysis_id: str, now: datetime | None = None
) -> ControlResult:
    """Resume a paused or halted analysis (its failed-round count starts over)."""
    return _operate(sessions, analysis_id, "resume", now)


def abort_analysis(
    sessions: Sessions, analysis_id: str, now: datetime | None = None
) -> ControlResult:
    """Abort an analysis: the canary weight goes to 0 (pending action for the daemon)."""
    return _operate(sessions, analysis_id, "abort", now)


def promote_analysis(
    sessions: Sessions, analysis_id: str, now: datetime | None = None
) -> ControlResult:
    """Promote now (manual gate): the canary weight goes to 100."""
    return _operate(sessions, analysis_id, "promote", now)


def _analysis_status(session: Session, analysis: Analysis) -> dict[str, Any]:
    pending = pending_actions(session, analysis.id)
    return {
        "analysisId": analysis.id,
        "status": analysis.status,
        "verdict": analysis.verdict,
        "weight": analysis.weight,
        "step": analysis.step,
        "rounds": analysis.rounds_done,
        "revision": analysis.revision,
        "startedAt": analysis.started_at.isoformat(),
        "updatedAt": analysis.updated_at.isoformat(),
        "reason": analysis.reason,
        "pendingActions": [
            {"id": a.id, "kind": a.kind, "toWeight": a.to_weight, "error": a.error} for a in pending
        ],
    }


def status(sessions: Sessions, config: Config) -> list[dict[str, Any]]:
    """One entry per configured canary: its active (or latest) daemon analysis."""
    rows = []
    with sessions.begin() as session:
        for canary in config.canary:
            active = active_analysis(session, canary.name)
            latest = active
            if latest is None:
                daemon = [
                    a
                    for a in list_analyses(session, canary=canary.name, limit=20)
                    if a.source == "daemon"
                ]
                latest = daemon[0] if daemon else None
            rows.append(
                {
                    "canary": canary.name,
                    "namespace": canary.namespace,
                    "active": active is not None,
                    "analysis": _analysis_status(session, latest) if latest else None,
                }
            )
    return rows
