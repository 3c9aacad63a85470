"""The stored state of an Argo analysis, as the measurement response shows it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from canary.model import AnalysisStatus, Judgement, json_safe
from canary.store.database import Sessions
from canary.store.reads import analysis_head, latest_rounds

__all__ = [
    "StoredView",
    "load_view",
    "response_body",
    "state_view",
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


def load_view(sessions: Sessions, analysis_id: str) -> StoredView:
    """The analysis, its latest round and the per-metric results of its latest judged round."""
    with sessions() as session:
        analysis = analysis_head(session, analysis_id)
        rounds = latest_rounds(session, analysis_id, limit=20)
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


def state_view(loaded: Any) -> StoredView:
    """What deciding about a new round needs, from what the round reads first
    (`canary.rounds.load_for_round`): no per-metric results."""
    latest = loaded.latest
    return StoredView(
        analysis_id=loaded.id,
        status=loaded.status.value,
        verdict=loaded.verdict,
        verdict_round=loaded.verdict_round,
        round=latest.index if latest else None,
        last_round_at=latest.recorded_at if latest else None,
        last_error=latest.error if latest else None,
        score=None,
        reasons=[],
        metrics={},
        started_at=loaded.started_at,
    )


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
