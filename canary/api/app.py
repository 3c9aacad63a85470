"""`create_app(context) -> FastAPI`: the HTTP API of `canary serve` and `canary run`.

Routes: /healthz, /readyz, /metrics (no token), /api/v1/argo/measure (the Argo
Rollouts web metric provider), /api/v1/... (REST), /analyses (HTML report pages),
/openapi.json and /docs. Every answer, errors included, is JSON (except /metrics:
Prometheus text format, and the report pages).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from canary import __version__
from canary.api import argo, health, metrics, pages, rest
from canary.api.argo import ArgoRunner
from canary.api.auth import require_token
from canary.api.context import AppContext
from canary.api.errors import install_error_handlers
from canary.api.limits import BodyLimitMiddleware, NulGuardMiddleware
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
        openapi_url=None,  # served by `_docs` below, behind the token unless public
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    app.state.tokens = context.api_tokens() if context.auth else []
    server = context.config.server
    app.state.argo = ArgoRunner(server.new_analyses_per_minute, server.max_running_analyses)
    app.state.request_metrics = RequestMetrics()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(argo.router)
    app.include_router(rest.router)
    app.include_router(pages.router)
    _docs(app, public=context.config.server.public_docs)
    # Outermost first: the limit answers 413 before anything reads the body.
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.request_metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=context.config.server.max_body_bytes)
    app.add_middleware(NulGuardMiddleware)
    _warm_judges(context)
    return app


def _docs(app: FastAPI, *, public: bool) -> None:
    """/openapi.json, /docs and /redoc: the API's own token rule unless `public_docs`.

    A browser cannot send the bearer header, so /docs and /redoc are for
    `[server] public_docs = true`; otherwise fetch /openapi.json with the token.
    """
    dependencies = [] if public else [Depends(require_token)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="canary API")

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="canary API")


def _warm_judges(context: AppContext) -> None:
    """Import the configured canaries' judges now (scipy takes a second or two to
    import), so the first Argo measurements do not all wait for it at once."""
    from canary.judge import make_judge

    for canary in context.config.canary:
        make_judge(canary.judge, canary.metrics, canary.settings())
