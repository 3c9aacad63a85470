"""`/api/v1`: configured canaries and their state, analyses with their rounds, and the
operator operations (start, pause, resume, abort, promote) of `canary.control`.

Control operations only touch the store: a traffic change is recorded as a pending
action which the daemon holding the canary's lease carries out (persist before
acting, docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from canary import control
from canary.api.auth import bearer_scheme, require_token
from canary.api.errors import ApiError
from canary.api.params import reject_unknown_query
from canary.config import CanaryConfig
from canary.errors import NotFoundError, UsageError
from canary.model import AnalysisStatus, Verdict
from canary.store.analyses import list_analyses, load_analysis_full
from canary.store.tables import Analysis

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["rest"],
    dependencies=[Depends(bearer_scheme), Depends(require_token), Depends(reject_unknown_query)],
    responses={401: {"description": "missing or wrong bearer token"}},
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad argument (the body names the field)"},
    401: {"description": "missing or wrong bearer token"},
    404: {"description": "no such canary or analysis"},
}

_Name = Annotated[str, Path(max_length=128, pattern=r"^[a-z0-9-]+$")]
_Id = Annotated[str, Path(max_length=64)]


class StartRequest(BaseModel):
    """Optional body of a start request."""

    model_config = ConfigDict(extra="forbid")

    revision: str | None = Field(default=None, max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _canary_summary(canary: CanaryConfig) -> dict[str, Any]:
    return {
        "name": canary.name,
        "namespace": canary.namespace,
        "judge": canary.judge,
        "interval": canary.interval,
        "promotion": canary.promotion,
        "steps": [{"weight": s.weight, "duration": s.duration} for s in canary.steps],
        "metrics": [{"name": m.name, "kind": m.kind.value} for m in canary.metrics],
        "virtualService": canary.traffic.virtual_service,
        "httpRoute": canary.traffic.http_route,
    }


def _analysis_summary(analysis: Analysis) -> dict[str, Any]:
    return {
        "analysisId": analysis.id,
        "canary": analysis.canary,
        "source": analysis.source,
        "key": analysis.key,
        "revision": analysis.revision,
        "status": analysis.status,
        "verdict": analysis.verdict,
        "verdictRound": analysis.verdict_round,
        "reason": analysis.reason,
        "judge": analysis.judge,
        "weight": analysis.weight,
        "step": analysis.step,
        "rounds": analysis.rounds_done,
        "startedAt": _iso(analysis.started_at),
        "updatedAt": _iso(analysis.updated_at),
        "finishedAt": _iso(analysis.finished_at),
    }


def _analysis_full(analysis: Analysis) -> dict[str, Any]:
    body = _analysis_summary(analysis)
    body["rounds"] = [
        {
            "index": r.index,
            "windowStart": _iso(r.window_start),
            "windowEnd": _iso(r.window_end),
            "recordedAt": _iso(r.recorded_at),
            "weight": r.weight,
            "step": r.step,
            "error": r.error,
            "verdict": r.verdict,
            "decision": r.decision,
            "score": r.score,
            "reasons": list(r.reasons or []),
            "observations": [
                {"metric": o.metric, "arm": o.arm, "kind": o.kind, "delta": o.delta}
                for o in r.observations
            ],
            "results": [
                {
                    "metric": m.metric,
                    "verdict": m.verdict,
                    "verdictRound": m.verdict_round,
                    "reasons": list(m.reasons or []),
                    "statistics": m.statistics,
                }
                for m in r.results
            ],
        }
        for r in analysis.rounds
    ]
    body["actions"] = [
        {
            "id": a.id,
            "round": a.round_index,
            "kind": a.kind,
            "fromWeight": a.from_weight,
            "toWeight": a.to_weight,
            "state": a.state,
            "error": a.error,
            "createdAt": _iso(a.created_at),
            "doneAt": _iso(a.done_at),
        }
        for a in analysis.actions
    ]
    body["settings"] = analysis.settings
    return body


@router.get("/canaries", summary="configured canaries and their current analysis")
async def list_canaries(request: Request) -> list[dict[str, Any]]:
    context = request.app.state.context
    rows = await asyncio.to_thread(control.status, context.sessions, context.config)
    by_name = {row["canary"]: row for row in rows}
    return [
        {
            **_canary_summary(c),
            "active": by_name[c.name]["active"],
            "analysis": by_name[c.name]["analysis"],
        }
        for c in context.config.canary
    ]


@router.get("/canaries/{name}", summary="one configured canary", responses=_ERRORS)
async def get_canary(request: Request, name: _Name) -> dict[str, Any]:
    context = request.app.state.context
    canary = _configured(context, name)
    rows = await asyncio.to_thread(control.status, context.sessions, context.config)
    row = next(r for r in rows if r["canary"] == canary.name)
    return {**_canary_summary(canary), "active": row["active"], "analysis": row["analysis"]}


def _configured(context: Any, name: str) -> CanaryConfig:
    for canary in context.config.canary:
        if canary.name == name:
            return canary
    raise ApiError(404, f"no canary named {name!r}")


@router.post(
    "/canaries/{name}/start",
    summary="start a daemon analysis of a configured canary",
    status_code=201,
    responses={**_ERRORS, 409: {"description": "the canary already has an active analysis"}},
)
async def start(request: Request, name: _Name, body: StartRequest | None = None) -> JSONResponse:
    context = request.app.state.context
    _configured(context, name)
    revision = body.revision if body else None
    try:
        analysis_id = await asyncio.to_thread(
            control.start_analysis, context.sessions, context.config, name, revision
        )
    except UsageError as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse(
        {"analysisId": analysis_id, "canary": name, "status": "running"}, status_code=201
    )


@router.get("/status", summary="every configured canary with its daemon analysis")
async def status(request: Request) -> list[dict[str, Any]]:
    context = request.app.state.context
    return await asyncio.to_thread(control.status, context.sessions, context.config)


@router.get("/analyses", summary="analyses, newest first", responses=_ERRORS)
async def analyses(
    request: Request,
    canary: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[AnalysisStatus | None, Query()] = None,
    verdict: Annotated[Verdict | None, Query()] = None,
    source: Annotated[Literal["daemon", "argo", "analyze", "import"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    context = request.app.state.context

    def query() -> list[dict[str, Any]]:
        with context.sessions() as session:
            rows = list_analyses(
                session,
                canary=canary,
                verdict=verdict.value if verdict else None,
                statuses=[status.value] if status else None,
                source=source,
                limit=limit,
            )
            return [_analysis_summary(r) for r in rows]

    return await asyncio.to_thread(query)


@router.get(
    "/analyses/{analysis_id}",
    summary="one analysis with its rounds, per-metric results and actions",
    responses=_ERRORS,
)
async def get_analysis(request: Request, analysis_id: _Id) -> dict[str, Any]:
    context = request.app.state.context

    def query() -> dict[str, Any]:
        with context.sessions() as session:
            return _analysis_full(load_analysis_full(session, analysis_id))

    return await asyncio.to_thread(query)


_OPERATIONS = {
    "pause": control.pause_analysis,
    "resume": control.resume_analysis,
    "abort": control.abort_analysis,
    "promote": control.promote_analysis,
}


@router.post(
    "/analyses/{analysis_id}/{operation}",
    summary="pause, resume, abort or promote a daemon analysis",
    responses={**_ERRORS, 409: {"description": "the operation is not possible in this state"}},
)
async def operate(
    request: Request,
    analysis_id: _Id,
    operation: Literal["pause", "resume", "abort", "promote"],
) -> dict[str, Any]:
    context = request.app.state.context
    try:
        result = await asyncio.to_thread(_OPERATIONS[operation], context.sessions, analysis_id)
    except NotFoundError:
        raise
    except UsageError as exc:
        raise ApiError(409, str(exc)) from None
    return result.as_dict()
