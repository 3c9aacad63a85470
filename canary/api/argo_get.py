"""GET /api/v1/argo/measure as a plain Starlette route in front of FastAPI's.

Argo calls this once per interval per rollout, and FastAPI's dependency solving
and parameter validation cost more CPU than the rest of the HTTP handling of a
call. This route makes the same checks in the same order with the same answers —
the bearer token (`auth.require_token`), then no unknown query parameter, then
each declared parameter in its declared order (the hashes required, every value
at most `MAX_LENGTH` characters, the last of repeated values) — and hands the
arguments to the same measurement (`argo.measure_args`). The FastAPI route it
shadows stays declared, so the OpenAPI document still describes the endpoint.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from canary.api.argo import measure_args
from canary.api.auth import require_token
from canary.api.errors import ApiError

__all__ = ["MAX_LENGTH", "PATH", "measure_route"]

PATH = "/api/v1/argo/measure"
#: The longest value a query parameter may have (as the FastAPI route declares).
MAX_LENGTH = 256
#: The query parameters in the FastAPI route's declared order (the first failing
#: one is reported), and whether each is required.
_PARAMS = (
    ("canaryHash", True),
    ("stableHash", True),
    ("canary", False),
    ("service", False),
    ("namespace", False),
    ("profile", False),
)
_KNOWN = frozenset(name for name, _ in _PARAMS)
_ALLOWED = ", ".join(sorted(_KNOWN))


def _arguments(request: Request) -> dict[str, str | None]:
    """The measurement arguments; 400 naming the first unknown, missing or long one."""
    query = request.query_params
    for name in query:
        if name not in _KNOWN:
            raise ApiError(
                400, f"unknown query parameter {name!r} (allowed: {_ALLOWED})", field=name
            )
    args: dict[str, str | None] = {}
    for name, required in _PARAMS:
        value = query.get(name)
        if value is None and required:
            raise ApiError(400, f"field {name!r} is required", field=name)
        if value is not None and len(value) > MAX_LENGTH:
            raise ApiError(
                400,
                f"{name}: String should have at most {MAX_LENGTH} characters",
                field=name,
            )
        args[name] = value
    return args


async def _measure_get(request: Request) -> Response:
    await require_token(request)
    return await measure_args(request, _arguments(request))


class _MeasureRoute(Route):
    """GET only (no implicit HEAD, as the FastAPI route), and known to the request
    metrics by its path, as FastAPI's routes are (`scope["route"]`)."""

    def __init__(self) -> None:
        super().__init__(PATH, _measure_get, methods=["GET"], include_in_schema=False)
        self.methods = {"GET"}

    def matches(self, scope: Any) -> tuple[Match, Any]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def measure_route() -> Route:
    """The route to put before the FastAPI routes (`create_app`)."""
    return _MeasureRoute()
