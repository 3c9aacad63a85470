"""A lean HTTP/1.1 client for the Prometheus API: keep-alive connections over asyncio
streams, one request at a time per connection.

httpx spends about 1 ms of CPU on each request (URL and header models, the auth and
redirect flows, anyio), twenty times what the exchange itself costs here; a round of
a thousand canaries makes a thousand requests, and an Argo round's whole budget is a
few milliseconds. This module speaks only what the query API needs: a GET or a
form-encoded POST, and an answer framed by Content-Length, by the chunked transfer
coding, or by the end of the connection (RFC 9112, section 6.3). It asks for no
compression (Prometheus then spends no CPU on gzip either).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Connection", "ConnectionClosed", "Origin", "ProtocolError", "Response"]

#: Longest status line or header block accepted (asyncio's default limit is 64 KiB).
_LIMIT = 1 << 20


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 as this client reads it."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before answering (a stale keep-alive one)."""


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: status, reason and the whole body (what `PrometheusClient` reads)."""

    status_code: int
    reason_phrase: str
    content: bytes
    keep_alive: bool = True

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body decoded as JSON; ValueError when it is not JSON."""
        return orjson.loads(self.content)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host, port, the URL's path prefix and TLS context."""

    host: str
    port: int
    prefix: str  # the base URL's path, without a trailing slash
    host_header: str
    ssl: ssl.SSLContext | None

    @classmethod
    def of(cls, url: str, context: ssl.SSLContext | None) -> Origin:
        """The origin of an http(s) base URL; `context` is used for https only."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        host_header = parts.netloc.rpartition("@")[2]
        return cls(
            host=parts.hostname,
            port=port,
            prefix=parts.path.rstrip("/"),
            host_header=host_header,
            ssl=context if secure else None,
        )


class Connection:
    """One keep-alive connection; `request` sends a request and reads its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.served = 0  # answers read on this connection

    @classmethod
    async def open(cls, origin: Origin) -> Connection:
        reader, writer = await asyncio.open_connection(
            origin.host,
            origin.port,
            ssl=origin.ssl,
            server_hostname=origin.host if origin.ssl is not None else None,
            limit=_LIMIT,
        )
        return cls(reader, writer)

    @property
    def usable(self) -> bool:
        """Whether an idle connection can carry the next request: not closed by either
        side and nothing received since the last answer. Bytes on an idle connection
        are not an answer to anything (a proxy's 408 before it closes, say), so such a
        connection is dead, as httpcore treats any readable idle socket."""
        reader = self._reader
        # StreamReader has no public way to ask whether bytes are buffered.
        return not self._writer.is_closing() and not reader.at_eof() and not reader._buffer

    def close(self) -> None:
        self._writer.close()

    async def request(self, message: bytes, *, head: bool = False) -> Response:
        """Send `message` (request line, headers and body) and read the whole answer.

        ConnectionClosed when the connection ends before any byte of the answer;
        ProtocolError when the answer does not frame.
        """
        reader = self._reader
        self._writer.write(message)  # one send for the headers and the body
        await self._writer.drain()
        try:
            block = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise ConnectionClosed("the server closed the connection") from None
            raise ProtocolError("the answer ends inside its headers") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("the answer's headers are too long") from None
        try:
            status, reason, headers, keep_alive = _head(block)
            while 100 <= status < 200:  # an interim answer: the final one follows
                block = await reader.readuntil(b"\r\n\r\n")
                status, reason, headers, keep_alive = _head(block)
        except asyncio.IncompleteReadError:
            raise ProtocolError("the answer ends inside its headers (after 1xx)") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("the answer's headers are too long") from None
        codings = headers.get("transfer-encoding", "").lower()
        try:
            if head or status in (204, 304):
                body = b""
            elif codings.rpartition(",")[2].strip() == "chunked":
                body = await _chunked(reader)
            elif "content-length" in headers and not codings:
                body = await reader.readexactly(int(headers["content-length"]))
            else:  # no length, or a coding this client does not frame: until the end
                body = await reader.read()
                keep_alive = False
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            raise ProtocolError("the answer's body ends early or does not frame") from None
        self.served += 1
        return Response(status, reason, body, keep_alive)


def _head(block: bytes) -> tuple[int, str, dict[str, str], bool]:
    """Status, reason, headers (lower-case names) and whether the connection stays."""
    lines = block.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    return int(code), reason, headers, keep_alive


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    """A body in the chunked transfer coding (RFC 9112, section 7.1), trailers dropped."""
    parts = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")
