"""Every error the API returns is a JSON body: ``{"error": ..., "status": ..., "field": ...}``.

Released Argo Rollouts versions count an empty or non-JSON 2xx body as a success,
so nothing here ever answers without JSON. Validation errors are 400 (not FastAPI's
422) and name the offending field. A database that cannot be reached or used is a
503 naming the database (its URL without password) and is logged as one line,
without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from canary.errors import CanaryError, NotFoundError, UsageError
from canary.store.database import StoreFailure, database_label, failure_reason

__all__ = ["ApiError", "error_body", "install_error_handlers", "validation_message"]

log = logging.getLogger("canary.api")


class ApiError(Exception):
    """An error with its HTTP status, a message and optionally the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra or {}


def error_body(status: int, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "status": status}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return body


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """(field, message) of the first validation error, in plain words."""
    first = errors[0]
    field = _field_name(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return field, f"unknown field {field!r}"
    if kind == "missing":
        return field, f"field {field!r} is required"
    if kind in ("json_invalid", "json_type"):
        return "body", "request body is not valid JSON"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return field, f"{field}: {message}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status, exc.message, exc.field, **exc.extra),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = validation_message(list(exc.errors()))
        return JSONResponse(error_body(400, message, field), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return JSONResponse(
            error_body(exc.status_code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(error_body(404, str(exc)), status_code=404)

    @app.exception_handler(UsageError)
    async def _usage(request: Request, exc: UsageError) -> JSONResponse:
        return JSONResponse(error_body(400, str(exc)), status_code=400)

    @app.exception_handler(CanaryError)
    async def _canary(request: Request, exc: CanaryError) -> JSONResponse:
        log.warning("request failed: %s", exc)
        return JSONResponse(error_body(503, str(exc)), status_code=503)

    @app.exception_handler(StoreFailure)
    async def _database(request: Request, exc: StoreFailure) -> JSONResponse:
        label = database_label(request.app.state.context.sessions)
        message = f"database unavailable: {label}: {failure_reason(exc)}"
        log.warning("%s %s: %s", request.method, request.url.path, message)
        return JSONResponse(error_body(503, message), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(500, f"internal error: {type(exc).__name__}"), status_code=500
        )
