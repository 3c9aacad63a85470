"""The stored state of an Argo analysis, as the measurement response shows it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from canary.errors import NotFoundError
from canary.model import AnalysisStatus, Judgement, json_safe
from canary.store.analyses import finish_analysis, lock_analysis
from canary.store.tables import Analysis, Round

__all__ = [
    "StoredView",
    "find_id",
    "finish",
    "load_state",
    "load_view",
    "response_body",
    "view_after",
]


@dataclass(frozen=True, slots=True)
class StoredView:
    analysis_id: str
    status: str
    verdict: str
    verdict_round: int | None
    round: int | None  # index of the latest stored round (0 = warm-up), None: none yet
    last_round_at: datetime | None
    last_error: str | None
    score: float | None
    reasons: list[str]
    metrics: dict[str, Any]
    started_at: datetime

    @property
    def final(self) -> bool:
        return AnalysisStatus(self.status).is_final


def _head(session: Session, analysis_id: str) -> Any:
    """The analysis' scalar columns only (not its settings, judge state or snapshot)."""
    row = session.execute(
        select(
            Analysis.id,
            Analysis.status,
            Analysis.verdict,
            Analysis.verdict_round,
            Analysis.started_at,
        ).where(Analysis.id == analysis_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no analysis with id {analysis_id!r}")
    return row


def load_view(sessions: sessionmaker[Session], analysis_id: str) -> StoredView:
    """The analysis, its latest round and the per-metric results of its latest judged round."""
    with sessions() as session:
        analysis = _head(session, analysis_id)
        rounds = list(
            session.scalars(
                select(Round)
                .where(Round.analysis_id == analysis_id)
                .order_by(Round.index.desc())
                .limit(20)
                .options(selectinload(Round.results))
            )
        )
        latest = rounds[0] if rounds else None
        judged = next((r for r in rounds if r.results), None)
        metrics = {
            result.metric: {
                "verdict": result.verdict,
                "verdictRound": result.verdict_round,
                "reasons": list(result.reasons or []),
                "statistics": dict(result.statistics or {}),
            }
            for result in (judged.results if judged else [])
        }
        reasons = list(judged.reasons or []) if judged else []
        if latest is not None and latest.error:
            reasons = [f"round {latest.index}: queries failed: {latest.error}", *reasons]
        elif latest is not None and latest.index == 0:
            reasons = ["warm-up: counter snapshot taken; the next round is the first judged"]
        return StoredView(
            analysis_id=analysis.id,
            status=analysis.status,
            verdict=analysis.verdict,
            verdict_round=analysis.verdict_round,
            round=latest.index if latest else None,
            last_round_at=latest.recorded_at if latest else None,
            last_error=latest.error if latest else None,
            score=judged.score if judged else None,
            reasons=reasons,
            metrics=metrics,
            started_at=analysis.started_at,
        )


def view_after(
    view: StoredView,
    index: int,
    judgement: Judgement | None,
    at: datetime,
    *,
    finished: bool,
) -> StoredView:
    """The view once round `index` (just recorded, without error) is added to `view`.

    Saves reading back what this process has just written.
    """
    if judgement is None:  # the warm-up snapshot
        return replace(
            view,
            round=index,
            last_round_at=at,
            last_error=None,
            reasons=["warm-up: counter snapshot taken; the next round is the first judged"],
        )
    metrics = {
        result.name: {
            "verdict": result.verdict.value,
            "verdictRound": result.round,
            "reasons": list(result.reasons),
            "statistics": json_safe(dict(result.statistics)),
        }
        for result in judgement.metrics.values()
    }
    status = AnalysisStatus.COMPLETED.value if finished else view.status
    return replace(
        view,
        status=status,
        verdict=judgement.verdict.value,
        verdict_round=judgement.round,
        round=index,
        last_round_at=at,
        last_error=None,
        score=judgement.score,
        reasons=list(judgement.reasons),
        metrics=metrics,
    )


def load_state(sessions: sessionmaker[Session], analysis_id: str) -> StoredView:
    """What deciding about a new round needs (two small reads): no per-metric results."""
    with sessions() as session:
        analysis = _head(session, analysis_id)
        latest = session.execute(
            select(Round.index, Round.recorded_at, Round.error)
            .where(Round.analysis_id == analysis_id)
            .order_by(Round.index.desc())
            .limit(1)
        ).first()
        return StoredView(
            analysis_id=analysis.id,
            status=analysis.status,
            verdict=analysis.verdict,
            verdict_round=analysis.verdict_round,
            round=latest.index if latest else None,
            last_round_at=latest.recorded_at if latest else None,
            last_error=latest.error if latest else None,
            score=None,
            reasons=[],
            metrics={},
            started_at=analysis.started_at,
        )


def find_id(sessions: sessionmaker[Session], key: str) -> str | None:
    """The id of the analysis keyed `key`, if there is one."""
    with sessions() as session:
        return session.scalar(select(Analysis.id).where(Analysis.key == key))


def finish(sessions: sessionmaker[Session], analysis_id: str, reason: str | None) -> None:
    """Close a judged-only analysis once its verdict is final (FAIL, or the budget's end)."""
    with sessions.begin() as session:
        analysis = lock_analysis(session, analysis_id)
        if not AnalysisStatus(analysis.status).is_final:
            finish_analysis(session, analysis, AnalysisStatus.COMPLETED, reason=reason)


def response_body(
    view: StoredView,
    *,
    canary: str,
    canary_hash: str,
    stable_hash: str,
    profile: str,
    new_round: bool,
    stale: bool,
    note: str | None = None,
    next_round_after: datetime | None = None,
) -> dict[str, Any]:
    """The measurement JSON. `verdict` and `result.verdict` are the documented paths."""
    summary = {
        "verdict": view.verdict,
        "analysisId": view.analysis_id,
        "round": view.round,
        "score": view.score,
        "stale": stale,
    }
    body: dict[str, Any] = {
        "verdict": view.verdict,
        "analysisId": view.analysis_id,
        "round": view.round,
        "verdictRound": view.verdict_round,
        "score": view.score,
        "reasons": view.reasons,
        "metrics": view.metrics,
        "status": view.status,
        "newRound": new_round,
        "stale": stale,
        "warmup": view.round == 0,
        "canary": canary,
        "canaryHash": canary_hash,
        "stableHash": stable_hash,
        "profile": profile,
        "nextRoundAfter": next_round_after.isoformat() if next_round_after else None,
        "result": summary,
    }
    if note:
        body["note"] = note
    return body
