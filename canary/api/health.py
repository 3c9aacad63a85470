"""`/healthz` (liveness: the process answers) and `/readyz` (database and Prometheus).

Neither needs a token, so a kubelet can probe them. /readyz answers 503 with the
failing check named when the database or Prometheus cannot be reached.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from canary.store.database import check_schema

__all__ = ["router"]

router = APIRouter(tags=["health"])

_PROBE_TIMEOUT = 3.0


@router.get("/healthz", summary="liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database(context: Any) -> None:
    with context.sessions() as session:
        session.execute(text("SELECT 1"))
        check_schema(session.get_bind())


async def _check_prometheus(context: Any) -> None:
    client = getattr(context.source, "client", None)
    probe = (
        context.ready or getattr(client, "ready", None) or getattr(context.source, "ready", None)
    )
    if probe is not None:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result is False:
            raise RuntimeError("Prometheus is not ready")
        return
    url = context.config.prometheus.url + "/-/ready"
    async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT) as client:
        response = await client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered HTTP {response.status_code}")


@router.get(
    "/readyz",
    summary="readiness: database and Prometheus reachable",
    responses={503: {"description": "a dependency is unreachable"}},
)
async def readyz(request: Request) -> JSONResponse:
    context = request.app.state.context
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(run_in_threadpool(_check_database, context), _PROBE_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:  # every failure is reported, none crashes the probe
        checks["database"] = f"error: {_describe(exc)}"
    try:
        await asyncio.wait_for(_check_prometheus(context), _PROBE_TIMEOUT)
        checks["prometheus"] = "ok"
    except Exception as exc:
        checks["prometheus"] = f"error: {_describe(exc)}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {_PROBE_TIMEOUT:g}s"
    return str(exc) or type(exc).__name__
