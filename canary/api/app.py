"""`create_app(context) -> FastAPI`: the HTTP API of `canary serve` and `canary run`.

Routes: /healthz, /readyz, /metrics (no token), /api/v1/argo/measure (the Argo
Rollouts web metric provider), /api/v1/... (REST), /openapi.json and /docs. Every
answer, errors included, is JSON (except /metrics: Prometheus text format).
"""

from __future__ import annotations

from fastapi import FastAPI

from canary import __version__
from canary.api import argo, health, metrics, rest
from canary.api.argo import ArgoRunner
from canary.api.context import AppContext
from canary.api.errors import install_error_handlers
from canary.api.limits import BodyLimitMiddleware
from canary.api.metrics import RequestMetrics, RequestMetricsMiddleware

__all__ = ["AppContext", "create_app"]


def create_app(context: AppContext) -> FastAPI:
    """The ASGI application over `context` (see `AppContext` for what it needs).

    Tokens are read once here; with `context.auth` True and no token configured the
    API refuses every authenticated request (the `serve` command refuses to start).
    """
    app = FastAPI(
        title="canary",
        summary="Progressive-delivery canary analysis for Istio meshes",
        version=__version__,
        description=(
            "Argo Rollouts web metric provider, REST control of analyses, health and "
            "Prometheus metrics. Everything under /api needs `Authorization: Bearer <token>`."
        ),
    )
    app.state.context = context
    app.state.tokens = context.api_tokens() if context.auth else []
    app.state.argo = ArgoRunner()
    app.state.request_metrics = RequestMetrics()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(argo.router)
    app.include_router(rest.router)
    # Outermost first: the limit answers 413 before anything reads the body.
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.request_metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=context.config.server.max_body_bytes)
    _warm_judges(context)
    return app


def _warm_judges(context: AppContext) -> None:
    """Import the configured canaries' judges now (scipy takes a second or two to
    import), so the first Argo measurements do not all wait for it at once."""
    from canary.judge import make_judge

    for canary in context.config.canary:
        make_judge(canary.judge, canary.metrics, canary.settings())
