"""Request limits, as pure ASGI middlewares answering JSON.

- `BodyLimitMiddleware`: a body larger than `[server] max_body_bytes` is a 413. It
  checks Content-Length first and counts the bytes of chunked bodies as they arrive,
  so a client cannot stream an unbounded body.
- `NulGuardMiddleware`: a NUL byte in the path or the query string (raw or
  percent-encoded) is a 400 naming which, before any route or database sees it
  (PostgreSQL refuses NUL in text).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from canary.api.errors import ApiError, error_body

__all__ = ["BodyLimitMiddleware", "NulGuardMiddleware"]


class _TooLarge(ApiError):
    """Raised while the body is read; the app's ApiError handler answers 413 JSON."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body larger than {max_bytes} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await self._reject(send, 400, "invalid Content-Length header")
                    return
                if length > self.max_bytes:
                    await self._reject(send, 413, self._message())
                    return
        received = 0
        started = False
        exceeded = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _TooLarge(self.max_bytes)
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if exceeded:
                # Whatever the app made of the aborted read (FastAPI turns it into a
                # 400 "error parsing the body"), the answer is 413.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send, 413, self._message())
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not started:
                await self._reject(send, 413, self._message())

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def _reject(self, send: Any, status: int, message: str) -> None:
        body = json.dumps(error_body(status, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class NulGuardMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "replace")
            where = None
            if b"\x00" in unquote_to_bytes(path) or "\x00" in scope.get("path", ""):
                where = "path"
            elif b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
                where = "query"
            if where is not None:
                body = json.dumps(
                    error_body(400, f"{where}: NUL bytes are not allowed", where)
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
