"""Request checks shared by the routers: unknown query parameters are a 400."""

from __future__ import annotations

from fastapi import Request

from canary.api.errors import ApiError

__all__ = ["reject_unknown_query"]


async def reject_unknown_query(request: Request) -> None:
    """FastAPI dependency: 400 naming the first query parameter the route does not take."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in _all_query_params(dependant)}
    for name in request.query_params:
        if name not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise ApiError(
                400, f"unknown query parameter {name!r} (allowed: {allowed})", field=name
            )


def _all_query_params(dependant):  # type: ignore[no-untyped-def]
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _all_query_params(sub)
