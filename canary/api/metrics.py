"""`/metrics`: the service's registry (`canary.telemetry`) plus the API's request metrics.

Request metrics are labelled by the route *template* (``/api/v1/analyses/{analysis_id}``,
``unmatched`` for any path no route serves), the method (one of the standard HTTP
methods, else ``other``) and the status code (100-599, else ``other``): every label
has a bounded set of values, whatever unauthenticated clients send.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

__all__ = ["METHODS", "RequestMetrics", "RequestMetricsMiddleware", "router"]

#: Methods counted under their own name; anything else is ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

router = APIRouter(tags=["health"])


class RequestMetrics:
    """The API's own collectors, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "canary_http_requests",
            "HTTP requests answered by the canary API",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "canary_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 8, 10, 30),
            registry=self.registry,
        )
        self.argo_measurements = Counter(
            "canary_argo_measurements",
            "Argo web-metric measurements answered, by verdict and kind",
            ["verdict", "kind"],  # kind: round | cached | stale | error
            registry=self.registry,
        )


class RequestMetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI)."""

    def __init__(self, app: Any, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            code = str(status) if isinstance(status, int) and 100 <= status <= 599 else "other"
            self.metrics.requests.labels(method, route, code).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process (text format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    context = request.app.state.context
    parts = []
    if context.registry is not None:
        parts.append(generate_latest(context.registry))
    parts.append(generate_latest(request.app.state.request_metrics.registry))
    return Response(b"".join(parts), media_type=CONTENT_TYPE_LATEST)
