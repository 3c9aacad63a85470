"""`/healthz` (liveness: the process answers) and `/readyz` (what this replica needs).

Neither needs a token, so a kubelet can probe them. /readyz runs every check and
answers 503 naming each failing one with its reason:

- `database`: a connection, ``SELECT 1`` and the current schema;
- `disk`: SQLite only — the database's directory has at least 16 MiB free (a full
  disk fails every round's commit);
- `prometheus`: the instant query ``1`` answers and parses (a Prometheus that
  answers ``/-/ready`` but serves garbage is not ready);
- `kubernetes`: inside `canary run` with a real cluster, the API server answers
  discovery (``GET /api``).

``?exclude=NAME`` (repeatable, as kube-apiserver's own /readyz) still runs and
reports a check but does not let it fail the probe. The shipped Deployment probes
``/readyz?exclude=prometheus&exclude=kubernetes``: those are shared by every
replica, so failing readiness on them would remove every endpoint at once, and
Argo would see connection errors instead of the JSON 503 naming Prometheus; the
stored judgements, the REST API and the pages keep working meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from canary.api.errors import ApiError
from canary.store.database import ping, sqlite_file

__all__ = ["CHECKS", "MIN_FREE_BYTES", "router"]

router = APIRouter(tags=["health"])

#: Every check of /readyz, in the order they are reported.
CHECKS = ("database", "disk", "prometheus", "kubernetes")
#: Below this many free bytes in the SQLite database's directory the disk is "full".
MIN_FREE_BYTES = 16 * 1024 * 1024

_PROBE_TIMEOUT = 3.0


@router.get("/healthz", summary="liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database(context: Any) -> None:
    ping(context.sessions)


def _sqlite_dir(context: Any) -> Path | None:
    file = sqlite_file(context.sessions)
    return file.resolve().parent if file is not None else None


def _check_disk(context: Any) -> str | None:
    directory = _sqlite_dir(context)
    if directory is None:
        return "not checked (PostgreSQL: the disk is the server's)"
    free = shutil.disk_usage(directory).free
    if free < MIN_FREE_BYTES:
        raise RuntimeError(f"disk full: {free} bytes free in {directory} (SQLite database)")
    return None


async def _check_prometheus(context: Any) -> None:
    if context.ready is not None:
        result = context.ready()
        if inspect.isawaitable(result):
            result = await result
        if result is False:
            raise RuntimeError("Prometheus is not ready")
        return
    client = getattr(context.source, "client", None)
    if client is None or not hasattr(client, "query"):
        raise RuntimeError("no Prometheus source is configured")
    await client.query("1", time.time())  # raises on errors and unparsable answers


async def _check_kubernetes(request: Request) -> str | None:
    context = request.app.state.context
    if not context.kubernetes or context.config.kubernetes.mode == "memory":
        return "not used (`canary serve` never calls Kubernetes)"
    client = getattr(request.app.state, "kube_probe", None)
    if client is None:
        from canary.traffic.kube import KubeClient

        client = KubeClient.from_config(context.config.kubernetes)
        request.app.state.kube_probe = client
    await client.request("GET", "/api", verb="get", resource="API discovery", retries=0)
    return None


@router.get(
    "/readyz",
    summary="readiness: database, disk, Prometheus and Kubernetes",
    responses={
        400: {"description": "an unknown check in `exclude`"},
        503: {"description": "a check failed (each failing check named with its reason)"},
    },
)
async def readyz(
    request: Request,
    exclude: Annotated[
        list[str], Query(description="checks to report without failing on them")
    ] = [],  # noqa: B006 (FastAPI copies the default)
) -> JSONResponse:
    for name in exclude:
        if name not in CHECKS:
            raise ApiError(
                400, f"exclude: unknown check {name!r} ({', '.join(CHECKS)})", field="exclude"
            )
    context = request.app.state.context
    probes = {
        "database": lambda: asyncio.wait_for(
            run_in_threadpool(_check_database, context), _PROBE_TIMEOUT
        ),
        "disk": lambda: asyncio.wait_for(run_in_threadpool(_check_disk, context), _PROBE_TIMEOUT),
        "prometheus": lambda: asyncio.wait_for(_check_prometheus(context), _PROBE_TIMEOUT),
        "kubernetes": lambda: asyncio.wait_for(_check_kubernetes(request), _PROBE_TIMEOUT),
    }
    checks: dict[str, str] = {}
    reasons: list[str] = []
    for name in CHECKS:
        try:
            checks[name] = await probes[name]() or "ok"
        except Exception as exc:  # every failure is reported, none crashes the probe
            checks[name] = f"error: {_describe(exc)}"
            if name not in exclude:
                reasons.append(f"{name}: {_describe(exc)}")
    ok = not reasons
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
    if exclude:
        body["excluded"] = list(exclude)
    if reasons:
        body["reasons"] = reasons
    return JSONResponse(body, status_code=200 if ok else 503)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {_PROBE_TIMEOUT:g}s"
    return str(exc) or type(exc).__name__
