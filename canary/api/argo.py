"""The Argo Rollouts web-metric endpoint: one measurement = (at most) one judged round.

``GET /api/v1/argo/measure?canary=...&canaryHash=...&stableHash=...`` or ``POST`` the
same arguments as a JSON object (values may be strings, as Argo sends them).

- The analysis is found (or created, source ``argo``) by the key of
  `canary.api.argo_key`, so evidence continues across calls and restarts.
- A call runs one round through `canary.rounds.judge_round` unless less than 90% of
  the canary's `interval` has passed since the last round; then it answers with the
  latest stored judgement (`newRound: false`), so fast callers do not fabricate rounds.
  After a failed round the next call from 5 s on runs a fresh round: Argo retries an
  Error every 10 s whatever the metric's interval (argo-rollouts
  `analysis/analysis.go`, `DefaultErrorRetryInterval` in `utils/defaults`), and a
  replayed error would abort the rollout over one Prometheus blip.
- Decisions are taken one at a time per key, and a round never judges a window
  shorter than 90% of the interval (`judge_round(min_window=...)`), so concurrent
  first calls cannot judge a round milliseconds after the warm-up.
- A round is time-boxed (`AppContext.round_timeout`, 8 s by default, under Argo's
  10 s timeout): past it the answer is the stored judgement with `stale: true`, and
  the round finishes (and is stored) in the background. When the latest stored
  round failed, that answer is the 503 of the failure instead, so a Prometheus that
  stays slower than its timeout counts towards Argo's `consecutiveErrorLimit`.
- 200 with a JSON verdict whenever a judgement exists or is being built; 503 when the
  round's queries failed (Prometheus unreachable, errors): Argo counts an Error,
  retries 10 s later, and errors the run once consecutive errors exceed
  `consecutiveErrorLimit`. 400 names the bad field.
- A FAIL verdict, or the budget's end (max_rounds / max_duration), closes the
  analysis (status `completed`); later calls answer the final verdict.
- A new key is admitted only within the per-token rate and the cap on running
  analyses (`canary.api.admission`): else 429 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from canary.api.admission import NewAnalysisLimiter, count_running, recent_window, token_id
from canary.api.argo_key import ArgoTarget, resolve_target
from canary.api.argo_view import (
    StoredView,
    load_view,
    response_body,
    state_view,
    view_after,
)
from canary.api.auth import bearer_scheme, require_token
from canary.api.errors import ApiError
from canary.api.params import reject_unknown_query
from canary.errors import CanaryError, NotFoundError, RoundConflict
from canary.rounds import RoundResult, judge_round, load_for_round, open_analysis
from canary.store.database import StoreFailure, failure_reason

__all__ = ["ArgoRunner", "MeasureRequest", "router"]

log = logging.getLogger("canary.api.argo")

#: A call starts a new round once this share of the canary's interval has passed.
INTERVAL_SLACK = 0.9
#: After a failed round, calls sooner than this answer its 503 instead of querying
#: again: half of Argo's 10 s error retry, so every Argo retry still runs a fresh
#: round while a client calling in a loop cannot store a failed round per call.
ERROR_RETRY_SPACING = timedelta(seconds=5)

router = APIRouter(
    prefix="/api/v1/argo",
    tags=["argo"],
    dependencies=[Depends(bearer_scheme), Depends(require_token), Depends(reject_unknown_query)],
    responses={401: {"description": "missing or wrong bearer token"}},
)

_Arg = Annotated[str | None, Field(default=None, max_length=256)]


class MeasureRequest(BaseModel):
    """The measurement arguments as a JSON object (POST). Unknown fields are a 400."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    namespace: _Arg = None
    canary: _Arg = None
    service: _Arg = None
    canaryHash: str = Field(max_length=256, description="pod-template hash of the canary")
    stableHash: str = Field(max_length=256, description="pod-template hash of the stable pods")
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


class _StaleState(Exception):
    """The kept state of an analysis was not the stored one: measure again from the store."""


class ArgoRunner:
    """Per-process bookkeeping: at most one round in flight per analysis key, the
    admission of new keys (`canary.api.admission`), and per key the analysis as its
    last round here left it (`RoundResult.after`), so the next round starts without
    reading the store; a round on a stale one (another process or an operator
    changed the analysis) conflicts when writing, and the call is measured again
    from the store."""

    def __init__(self, new_analyses_per_minute: int = 30, kept_states: int = 500) -> None:
        self.limiter = NewAnalysisLimiter(new_analyses_per_minute)
        self.tasks: dict[str, asyncio.Task[RoundResult]] = {}
        self.ids: dict[str, str] = {}  # key -> analysis id (keys never change owner)
        self.locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.states: OrderedDict[str, Any] = OrderedDict()  # key -> RoundResult.after
        self.kept_states = kept_states

    async def measure(self, context: Any, target: ArgoTarget, client: str) -> JSONResponse:
        """One measurement of `target` for the caller `client` (`admission.token_id`)."""
        try:
            return await self._measure(context, target, client, kept=True)
        except _StaleState:
            return await self._measure(context, target, client, kept=False)

    async def _measure(
        self, context: Any, target: ArgoTarget, client: str, *, kept: bool
    ) -> JSONResponse:
        if context.source is None:
            raise ApiError(503, "cannot judge: no Prometheus source is configured")
        interval = timedelta(seconds=target.canary.interval)
        # One decision at a time per key: two first calls must not both see "no round
        # yet" (the second would judge a round milliseconds after the warm-up).
        async with self._lock(target.key):
            now = context.clock()
            loaded = self.states.get(target.key) if kept else None
            if loaded is not None:
                self.states.move_to_end(target.key)
                analysis_id, view = loaded.id, state_view(loaded)
            else:
                kept = False
                analysis_id, view, loaded = await self._state(context, target, now, client)
            if view.final:
                view = await self._view(context, analysis_id)
                return self._answer(view, target, note=f"analysis is {view.status}")
            running = self.tasks.get(target.key)
            if running is not None and not running.done():
                view = await self._view(context, analysis_id)
                return self._stale(view, target, "a round is still in progress")
            next_after = _next_round_after(view, interval)
            if next_after is not None and now < next_after:
                view = await self._view(context, analysis_id)
                if view.last_error:
                    raise _round_failed(
                        view,
                        f"cannot judge: the last round's queries failed: {view.last_error} "
                        f"(queried again from {next_after.isoformat()})",
                    )
                return self._answer(
                    view,
                    target,
                    note="less than the canary's interval since the last round: latest judgement",
                    next_after=next_after,
                )
            task = asyncio.create_task(
                self._round(context, analysis_id, target, now, interval, loaded)
            )
            self.tasks[target.key] = task
            task.add_done_callback(lambda t, key=target.key: self._forget(key, t))
        done, _ = await asyncio.wait({task}, timeout=context.round_timeout)
        if not done:
            log.warning(
                "round of %s exceeded %.1fs; answering with the stored judgement",
                analysis_id,
                context.round_timeout,
            )
            view = await self._view(context, analysis_id)
            return self._stale(
                view,
                target,
                f"round still running after {context.round_timeout:g}s (slow Prometheus)",
            )
        try:
            result = task.result()
        except RoundConflict:
            if kept:
                raise _StaleState from None
            view = await self._view(context, analysis_id)
            return self._answer(view, target, note="another call recorded this round")
        except CanaryError as exc:
            if kept and isinstance(exc, NotFoundError):  # deleted meanwhile
                self.ids.pop(target.key, None)
                raise _StaleState from None
            raise ApiError(503, f"cannot judge: {exc}") from exc
        if result.error is not None:
            view = await self._view(context, analysis_id)
            raise _round_failed(view, f"cannot judge: queries failed: {result.error}")
        finished = result.closing is not None
        view = view_after(view, result.index, result.judgement, now, finished=finished)
        next_after = now + interval * INTERVAL_SLACK
        return self._answer(view, target, new_round=True, next_after=next_after)

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self.locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self.locks[key] = lock  # dropped once no call holds or awaits it
        return lock

    @staticmethod
    async def _view(context: Any, analysis_id: str) -> StoredView:
        return await asyncio.to_thread(load_view, context.sessions, analysis_id)

    def _stale(self, view: StoredView, target: ArgoTarget, why: str) -> JSONResponse:
        """The stored judgement while a round runs; an error if the last round failed.

        A stale 200 over failing rounds would count as a success in Argo for as long
        as Prometheus stays slow, so then the answer is the 503 of the failed round.
        """
        if view.last_error:
            raise _round_failed(
                view, f"cannot judge: the last round's queries failed ({view.last_error}); {why}"
            )
        return self._answer(view, target, stale=True, note=f"{why}: latest stored judgement")

    async def _round(
        self,
        context: Any,
        analysis_id: str,
        target: ArgoTarget,
        at: Any,
        interval: timedelta,
        loaded: Any = None,
    ) -> RoundResult:
        self.states.pop(target.key, None)  # kept again below once the round is stored
        result = await judge_round(
            context.sessions,
            analysis_id,
            target.canary,
            context.source,
            at,
            min_window=interval * INTERVAL_SLACK,
            loaded=loaded,
        )
        if result.after is not None:
            self.states[target.key] = result.after
            if len(self.states) > self.kept_states:
                self.states.popitem(last=False)  # the least recently measured
        return result

    async def _state(
        self, context: Any, target: ArgoTarget, now: datetime, client: str
    ) -> tuple[str, StoredView, Any]:
        """The analysis of `target` (created on the first call, if admitted), its state
        and what a round reads first (`load_for_round`), in one trip to the store."""
        for _ in range(2):
            analysis_id = self.ids.get(target.key)
            try:
                if analysis_id is not None:
                    loaded = await asyncio.to_thread(load_for_round, context.sessions, analysis_id)
                else:
                    loaded, created = await asyncio.to_thread(
                        open_analysis,
                        context.sessions,
                        target.canary,
                        key=target.key,
                        source="argo",
                        revision=target.canary_hash,
                        now=now,
                        admit=self._admission(context, client, now),
                    )
                    if created:
                        self.limiter.record(client, now.timestamp())
            except NotFoundError:
                self.ids.pop(target.key, None)  # deleted meanwhile: look it up again
                continue
            self.ids[target.key] = loaded.id
            return loaded.id, state_view(loaded), loaded
        raise ApiError(503, f"cannot judge: the analysis of {target.key} keeps disappearing")

    def _admission(self, context: Any, client: str, now: datetime) -> Callable[[Any], None]:
        """What admits a new analysis in the store's transaction (`open_analysis`): a
        429 unless `client` may create one more now (`canary.api.admission`). The
        per-token rate is read here, on the event loop that keeps it; it refuses only
        a key that is not stored yet."""
        try:
            self.limiter.check(client, now.timestamp())
            refused = None
        except ApiError as exc:
            refused = exc
        server = context.config.server
        since = now - recent_window(context.config)

        def admit(session: Any) -> None:
            if refused is not None:
                raise refused
            running = count_running(session, since)
            if running >= server.max_running_analyses:
                raise ApiError(
                    429,
                    f"too many running analyses: {running} Argo analyses are running "
                    f"(server.max_running_analyses = {server.max_running_analyses}); "
                    "existing keys are still measured",
                    headers={"Retry-After": "60"},
                )

        return admit

    def _forget(self, key: str, task: asyncio.Task[RoundResult]) -> None:
        if self.tasks.get(key) is task:
            del self.tasks[key]
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, StoreFailure):  # one line, as the API's 503 says it
                log.warning("Argo round of %s: database error: %s", key, failure_reason(exc))
            elif not isinstance(exc, RoundConflict | CanaryError):
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


def _next_round_after(view: StoredView, interval: timedelta) -> datetime | None:
    """When the next round may run: `ERROR_RETRY_SPACING` after a failed round (Argo
    retries an Error every 10 s, whatever the metric's interval, so each of its
    retries runs a fresh round), else 90% of the interval after the last round; None
    before the first round."""
    if view.last_round_at is None:
        return None
    if view.last_error:
        return view.last_round_at + ERROR_RETRY_SPACING
    return view.last_round_at + interval * INTERVAL_SLACK


def _round_failed(view: StoredView, message: str) -> ApiError:
    return ApiError(
        503,
        message,
        extra={"verdict": view.verdict, "analysisId": view.analysis_id, "round": view.round},
    )


async def _measure(request: Request, args: dict[str, str | None]) -> JSONResponse:
    context = request.app.state.context
    target = resolve_target(context.config, args)
    runner: ArgoRunner = request.app.state.argo
    return await runner.measure(context, target, token_id(request.headers.get("authorization")))


_Q = Annotated[str | None, Query(max_length=256)]


@router.get(
    "/measure",
    summary="one Argo Rollouts measurement (query parameters)",
    response_model=MeasureResponse,
    responses=_RESPONSES,
)
async def measure_get(
    request: Request,
    canaryHash: Annotated[
        str, Query(max_length=256, description="pod-template hash of the canary (Latest)")
    ],
    stableHash: Annotated[
        str, Query(max_length=256, description="pod-template hash of the stable pods (Stable)")
    ],
    canary: Annotated[
        str | None, Query(max_length=256, description="the canary's name (or pass service)")
    ] = None,
    service: _Q = None,
    namespace: _Q = None,
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
