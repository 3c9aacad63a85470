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

__all__ = ["Connection", "ConnectionClosed", "Deadline", "Origin", "ProtocolError", "Response"]

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


class Deadline:
    """One exchange's timeouts: each phase (connecting, waiting for the answer's head,
    each wait for more of its body) may take `seconds`, and `phase` names the current
    one for the TimeoutError.

    One `asyncio.timeout` for the whole exchange, moved on as phases begin and bytes
    arrive: a context per read would cost more than the read. Moving it only once
    a twentieth of `seconds` has passed keeps that cheap for a fast body, so a stalled
    body times out after between 95% and 100% of `seconds` without bytes.
    """

    __slots__ = ("_loop", "_set_at", "_slack", "_timeout", "phase", "seconds")

    def __init__(self, timeout: asyncio.Timeout, seconds: float, phase: str) -> None:
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._set_at = self._loop.time()
        self._slack = seconds / 20
        self.seconds = seconds
        self.phase = phase

    def restart(self, phase: str) -> None:
        """A new phase: `seconds` from now."""
        self.phase = phase
        self._set_at = self._loop.time()
        self._timeout.reschedule(self._set_at + self.seconds)

    def progress(self) -> None:
        """Bytes arrived: the next wait for more may take `seconds` again."""
        now = self._loop.time()
        if now - self._set_at > self._slack:
            self._set_at = now
            self._timeout.reschedule(now + self.seconds)


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
        connection is dead, as httpcore treats a readable idle socket
        (httpcore/_async/http11.py, AsyncHTTP11Connection.has_expired)."""
        reader = self._reader
        # StreamReader has no public way to ask whether bytes are buffered.
        return not self._writer.is_closing() and not reader.at_eof() and not reader._buffer

    def close(self) -> None:
        self._writer.close()

    async def request(self, message: bytes, deadline: Deadline, *, head: bool = False) -> Response:
        """Send `message` (request line, headers and body) and read the whole answer,
        telling `deadline` as its parts arrive.

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
        deadline.restart("reading the answer")
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
                body = await _chunked(reader, deadline)
            elif "content-length" in headers and not codings:
                length = int(headers["content-length"])
                if length < 0:
                    raise ValueError("a negative Content-Length")
                body = await _exactly(reader, length, deadline)
            else:  # no length, or a coding this client does not frame: until the end
                body = await _exactly(reader, -1, deadline)
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


async def _exactly(reader: asyncio.StreamReader, size: int, deadline: Deadline) -> bytes:
    """`size` bytes (-1: up to the end of the stream), telling `deadline` of each part.

    IncompleteReadError when the stream ends before `size` bytes.
    """
    if size < 0:
        parts = []
        while part := await reader.read(1 << 16):
            parts.append(part)
            deadline.progress()
        return b"".join(parts)
    parts, missing = [], size
    while missing:
        part = await reader.read(missing)
        if not part:
            raise asyncio.IncompleteReadError(b"".join(parts), size)
        parts.append(part)
        missing -= len(part)
        deadline.progress()
    return b"".join(parts)


async def _chunked(reader: asyncio.StreamReader, deadline: Deadline) -> bytes:
    """A body in the chunked transfer coding (RFC 9112, section 7.1), trailers dropped."""
    parts = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size < 0:
            raise ValueError("a negative chunk size")
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return b"".join(parts)
        parts.append(await _exactly(reader, size, deadline))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")
