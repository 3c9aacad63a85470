"""The Argo Rollouts web-metric endpoint: one measurement = (at most) one judged round.

``GET /api/v1/argo/measure?canary=...&canaryHash=...&stableHash=...`` or ``POST`` the
same arguments as a JSON object (values may be strings, as Argo sends them).

- The analysis is found (or created, source ``argo``) by the key of
  `canary.api.argo_key`, so evidence continues across calls and restarts.
- A call runs one round through `canary.rounds.judge_round` unless less than 90% of
  the canary's `interval` has passed since the last round; then it answers with the
  latest stored judgement (`newRound: false`), so fast callers do not fabricate rounds.
- A round is time-boxed (`AppContext.round_timeout`, 8 s by default, under Argo's
  10 s timeout): past it the answer is the stored judgement with `stale: true`, and
  the round finishes (and is stored) in the background.
- 200 with a JSON verdict whenever a judgement exists or is being built; 503 when the
  round's queries failed (Prometheus unreachable, errors): Argo counts an Error,
  retries, and fails the run after `consecutiveErrorLimit`. 400 names the bad field.
- A FAIL verdict, or the budget's end (max_rounds / max_duration), closes the
  analysis (status `completed`); later calls answer the final verdict.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from canary.api.argo_key import ArgoTarget, resolve_target
from canary.api.argo_view import (
    StoredView,
    finish,
    load_state,
    load_view,
    response_body,
    view_after,
)
from canary.api.auth import bearer_scheme, require_token
from canary.api.errors import ApiError, error_body
from canary.api.params import reject_unknown_query
from canary.errors import CanaryError, NotFoundError
from canary.model import Verdict
from canary.rounds import RoundResult, ensure_analysis, judge_round
from canary.store.analyses import RoundConflict

__all__ = ["ArgoRunner", "MeasureRequest", "router"]

log = logging.getLogger("canary.api.argo")

#: A call starts a new round once this share of the canary's interval has passed.
INTERVAL_SLACK = 0.9

router = APIRouter(
    prefix="/api/v1/argo",
    tags=["argo"],
    dependencies=[Depends(bearer_scheme), Depends(require_token), Depends(reject_unknown_query)],
)

_Arg = Annotated[str | None, Field(default=None, max_length=256)]


class MeasureRequest(BaseModel):
    """The measurement arguments as a JSON object (POST). Unknown fields are a 400."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    namespace: _Arg = None
    canary: _Arg = None
    service: _Arg = None
    canaryHash: _Arg = None
    stableHash: _Arg = None
    profile: _Arg = None


class MeasureResult(BaseModel):
    """The compact summary at `$.result` (what the shipped AnalysisTemplate reads)."""

    verdict: str
    analysisId: str
    round: int | None
    score: float | None
    stale: bool


class MeasureResponse(BaseModel):
    verdict: str = Field(description="pass | fail | inconclusive | running")
    analysisId: str
    round: int | None = Field(description="latest stored round (0 is the warm-up snapshot)")
    verdictRound: int | None
    score: float | None
    reasons: list[str]
    metrics: dict[str, Any]
    status: str
    newRound: bool
    stale: bool
    warmup: bool
    canary: str
    canaryHash: str
    stableHash: str
    profile: str
    nextRoundAfter: str | None
    result: MeasureResult
    note: str | None = None


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "a bad or unknown argument (the body names the field)"},
    401: {"description": "missing or wrong bearer token"},
    413: {"description": "request body too large"},
    503: {"description": "cannot judge: Prometheus unreachable or its queries failed"},
}


class ArgoRunner:
    """Per-process bookkeeping: at most one round in flight per analysis key."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[RoundResult]] = {}
        self.ids: dict[str, str] = {}  # key -> analysis id (keys never change owner)

    async def measure(self, context: Any, target: ArgoTarget) -> JSONResponse:
        if context.source is None:
            raise ApiError(503, "cannot judge: no Prometheus source is configured")
        sessions = context.sessions
        now = context.clock()
        analysis_id, view = await self._state(context, target, now)
        interval = timedelta(seconds=target.canary.interval)
        next_after = view.last_round_at + interval * INTERVAL_SLACK if view.last_round_at else None

        if view.final:
            view = await asyncio.to_thread(load_view, sessions, analysis_id)
            return self._answer(view, target, note=f"analysis is {view.status}")
        running = self.tasks.get(target.key)
        if running is not None and not running.done():
            view = await asyncio.to_thread(load_view, sessions, analysis_id)
            return self._answer(
                view, target, stale=True, note="a round is still in progress", next_after=next_after
            )
        if next_after is not None and now < next_after and view.last_error:
            raise ApiError(
                503,
                f"cannot judge: the last round's queries failed: {view.last_error}",
                extra={"verdict": view.verdict, "analysisId": analysis_id, "round": view.round},
            )
        if next_after is not None and now < next_after:
            view = await asyncio.to_thread(load_view, sessions, analysis_id)
            return self._answer(
                view,
                target,
                note="less than the canary's interval since the last round: latest judgement",
                next_after=next_after,
            )
        task = asyncio.create_task(self._round(context, analysis_id, target, now))
        self.tasks[target.key] = task
        task.add_done_callback(lambda t, key=target.key: self._forget(key, t))
        done, _ = await asyncio.wait({task}, timeout=context.round_timeout)
        if not done:
            log.warning(
                "round of %s exceeded %.1fs; answering with the stored judgement",
                analysis_id,
                context.round_timeout,
            )
            view = await asyncio.to_thread(load_view, sessions, analysis_id)
            return self._answer(
                view,
                target,
                stale=True,
                note=f"round still running after {context.round_timeout:g}s "
                "(slow Prometheus): latest stored judgement",
            )
        try:
            result = task.result()
        except RoundConflict:
            view = await asyncio.to_thread(load_view, sessions, analysis_id)
            return self._answer(view, target, note="another replica recorded this round")
        except CanaryError as exc:
            raise ApiError(503, f"cannot judge: {exc}") from exc
        if result.error is not None:
            view = await asyncio.to_thread(load_view, sessions, analysis_id)
            return JSONResponse(
                error_body(
                    503,
                    f"cannot judge: queries failed: {result.error}",
                    verdict=view.verdict,
                    analysisId=view.analysis_id,
                    round=view.round,
                ),
                status_code=503,
            )
        finished = result.judgement is not None and (
            result.final or result.judgement.verdict is Verdict.FAIL
        )
        view = view_after(view, result.index, result.judgement, now, finished=finished)
        next_after = now + interval * INTERVAL_SLACK
        return self._answer(view, target, new_round=True, next_after=next_after)

    async def _round(
        self, context: Any, analysis_id: str, target: ArgoTarget, at: Any
    ) -> RoundResult:
        result = await judge_round(context.sessions, analysis_id, target.canary, context.source, at)
        if result.error is None and result.judgement is not None:
            verdict = result.judgement.verdict
            if verdict is Verdict.FAIL or result.final:
                reason = "; ".join(result.judgement.reasons) or f"verdict {verdict.value}"
                await asyncio.to_thread(finish, context.sessions, analysis_id, reason)
        return result

    async def _state(self, context: Any, target: ArgoTarget, now: Any) -> tuple[str, StoredView]:
        """The analysis of `target` (created on the first call) and its stored state."""
        for _ in range(2):
            analysis_id = self.ids.get(target.key)
            if analysis_id is None:
                analysis_id = await asyncio.to_thread(
                    ensure_analysis,
                    context.sessions,
                    target.canary,
                    key=target.key,
                    source="argo",
                    revision=target.canary_hash,
                    now=now,
                )
                self.ids[target.key] = analysis_id
            try:
                return analysis_id, await asyncio.to_thread(
                    load_state, context.sessions, analysis_id
                )
            except NotFoundError:
                self.ids.pop(target.key, None)  # deleted meanwhile: look it up again
        raise ApiError(503, f"cannot judge: the analysis of {target.key} keeps disappearing")

    def _forget(self, key: str, task: asyncio.Task[RoundResult]) -> None:
        if self.tasks.get(key) is task:
            del self.tasks[key]
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, RoundConflict | CanaryError):
                log.error("Argo round failed: %s: %s", type(exc).__name__, exc)

    def _answer(
        self,
        view: StoredView,
        target: ArgoTarget,
        *,
        new_round: bool = False,
        stale: bool = False,
        note: str | None = None,
        next_after: Any = None,
    ) -> JSONResponse:
        body = response_body(
            view,
            canary=target.canary.name,
            canary_hash=target.canary_hash,
            stable_hash=target.stable_hash,
            profile=target.profile,
            new_round=new_round,
            stale=stale,
            note=note,
            next_round_after=next_after,
        )
        return JSONResponse(body, status_code=200)


async def _measure(request: Request, args: dict[str, str | None]) -> JSONResponse:
    context = request.app.state.context
    target = resolve_target(context.config, args)
    runner: ArgoRunner = request.app.state.argo
    return await runner.measure(context, target)


_Q = Annotated[str | None, Query(max_length=256)]


@router.get(
    "/measure",
    summary="one Argo Rollouts measurement (query parameters)",
    response_model=MeasureResponse,
    responses=_RESPONSES,
)
async def measure_get(
    request: Request,
    namespace: _Q = None,
    canary: _Q = None,
    service: _Q = None,
    canaryHash: _Q = None,
    stableHash: _Q = None,
    profile: _Q = None,
) -> JSONResponse:
    args = {
        "namespace": namespace,
        "canary": canary,
        "service": service,
        "canaryHash": canaryHash,
        "stableHash": stableHash,
        "profile": profile,
    }
    return await _measure(request, args)


@router.post(
    "/measure",
    summary="one Argo Rollouts measurement (JSON body)",
    response_model=MeasureResponse,
    responses=_RESPONSES,
)
async def measure_post(request: Request, body: MeasureRequest) -> JSONResponse:
    return await _measure(request, body.model_dump())
