"""How the API is served: the one uvicorn configuration of `serve`, `run` and `demo`.

- Forwarded headers: uvicorn trusts ``X-Forwarded-Proto``/``-For`` from 127.0.0.1 by
  default — in a pod that is the Istio sidecar, i.e. any client. Here it never does;
  the report pages read ``X-Forwarded-Proto`` themselves, and only when
  `[server] trust_forwarded_proto` is set (`canary.api.pages`).
- A read timeout (`[server] read_timeout`): a request's head and body must arrive
  within it, counted from the connection (or from the first byte of a later request
  on a kept-alive connection); else the connection is answered 408 and closed, so
  slow or half-open clients do not hold connections. Idle kept-alive connections
  close after uvicorn's keep-alive timeout (5 s).
- A connection cap (`[server] max_connections`): a connection beyond it is answered
  503 (JSON) and closed at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from canary.config import ServerConfig

__all__ = ["server_config"]

_READING = (h11.IDLE, h11.SEND_BODY)


def _raw_answer(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message, "status": status}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def _protocol(read_timeout: float, max_connections: int) -> type[H11Protocol]:
    class BoundedH11Protocol(H11Protocol):
        _read_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(
                    _raw_answer(
                        503,
                        "Service Unavailable",
                        f"too many open connections (at most {max_connections})",
                    )
                )
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in _READING:
                if self._read_timer is None and not self.transport.is_closing():
                    self._arm()  # a (further) request is arriving
            else:
                self._disarm()  # the request is read (or the connection is over)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._read_timer = self.loop.call_later(read_timeout, self._read_timed_out)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if self.transport.is_closing() or self.conn.their_state not in _READING:
                return
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(
                    _raw_answer(
                        408,
                        "Request Timeout",
                        f"the request did not arrive within {read_timeout:g}s",
                    )
                )
            self.transport.close()

    return BoundedH11Protocol


def server_config(
    app: Any,
    server: ServerConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration serving `app` on `server.listen` (or host/port)."""
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "lifespan": "off",
        **options,
    }
    return uvicorn.Config(
        app,
        host=host if host is not None else server.host,
        port=port if port is not None else server.port,
        http=_protocol(server.read_timeout, server.max_connections),
        proxy_headers=False,
        **settings,
    )
