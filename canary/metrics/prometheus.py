"""An async client for the Prometheus HTTP API (also Thanos, Mimir, VictoriaMetrics).

Only `/api/v1/query` (always with an explicit `time`) and `/api/v1/query_range` are
on the query path; both are served by every Prometheus-compatible backend. Queries
are sent as form-encoded POST bodies so long selectors never hit URL limits.

One client is shared by every canary of a process. It holds up to
`PrometheusConfig.max_concurrency` keep-alive connections and lends one to each
request, which bounds the requests in flight. `timeout` bounds each phase of a
request: the wait for a free connection, connecting, the wait for the answer to
begin, and each wait for more of its body. Requests go over `canary.metrics.http`
(a lean HTTP/1.1 client: httpx cost a millisecond of CPU per request, more than
parsing the answer); when the environment names a proxy for Prometheus
(``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``, not bypassed by ``NO_PROXY``), or a
test passes an httpx transport, they go through httpx instead. Connection errors,
timeouts and 5xx answers are retried `retries` times with exponential backoff
(`retry_backoff`, doubling); 4xx answers never are. Every failure raises a typed
`canary.errors.PrometheusError` carrying the query and the server's message.
An empty result is not an error: `QueryResult.empty` is True ("no data").

Answers are decoded with orjson: a round of a thousand canaries parses hundreds of
thousands of samples, and orjson decodes them about twice as fast as the standard
library (msgspec measured the same; orjson keeps one generic parse path).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import math
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import httpx
import orjson

from canary.config import PrometheusConfig, read_secret
from canary.errors import (
    PrometheusBadResponse,
    PrometheusClientError,
    PrometheusError,
    PrometheusServerError,
    PrometheusStatusError,
    PrometheusTimeout,
    PrometheusUnreachable,
)
from canary.metrics.http import Connection, ConnectionClosed, Deadline, Origin, Response
from canary.retry import RetryPolicy, retrying

__all__ = ["PrometheusClient", "QueryResult", "RangeSeries", "Sample", "to_unix"]

log = logging.getLogger("canary.metrics")

#: An HTTP answer: the lean client's, or httpx's when requests go through httpx.
_Answer = Response | httpx.Response


def to_unix(at: datetime | float) -> float:
    """Seconds since the epoch; naive datetimes are refused (they are ambiguous)."""
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware (UTC) datetime")
        return at.timestamp()
    return float(at)


def _value(raw: Any, query: str) -> float:
    try:
        return float(raw)  # "NaN", "+Inf", "-Inf" included
    except (TypeError, ValueError):
        raise PrometheusBadResponse(
            f"Prometheus sent a sample value that is not a number: {raw!r}", query=query
        ) from None


class Sample(NamedTuple):
    """One element of an instant vector (or a scalar, with empty labels).

    A NamedTuple rather than a dataclass: results of thousands of series are parsed
    per round, and tuple construction is several times cheaper.
    """

    labels: Mapping[str, str]
    value: float
    timestamp: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series of a matrix: (timestamp, value) points in time order."""

    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A parsed answer. `result_type` is vector, matrix, scalar or string.

    `nonfinite` counts NaN/±Inf values, which are kept as floats (a ratio of two
    zero rates is NaN: no traffic); `warnings` are the server's warnings.
    """

    query: str
    result_type: str
    samples: Sequence[Sample] = ()
    series: Sequence[RangeSeries] = ()
    warnings: Sequence[str] = ()
    nonfinite: int = 0
    seconds: float = 0.0  # wall time of the HTTP exchange(s)
    attempts: int = 1

    @property
    def empty(self) -> bool:
        """True when the query matched nothing ("no data", not an error)."""
        return not self.samples and not self.series

    @property
    def scalar(self) -> float | None:
        """The single value of a scalar or one-element vector result, else None."""
        if len(self.samples) == 1:
            return self.samples[0].value
        return None


@dataclass
class _Stats:
    requests: int = 0
    retries: int = 0
    latencies: list[float] = field(default_factory=list)


def _tls_context(config: PrometheusConfig) -> ssl.SSLContext:
    """The TLS context of an https URL: the configured CA, no verification, or httpx's
    trust store (certifi)."""
    if config.insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if config.ca_file:
        return ssl.create_default_context(cafile=config.ca_file)
    return httpx.create_ssl_context()


class PrometheusClient:
    """Async Prometheus API client; use ``async with PrometheusClient(config) as c``.

    `transport` is for tests that need a specific httpx transport; by default the
    client opens real connections.
    """

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        record_latencies: bool = False,
    ) -> None:
        self.config = config
        self.url = _without_userinfo(config.url)  # what requests go to and errors show
        self._transport = transport
        self._record = record_latencies
        self.stats = _Stats()
        self._ready = False
        self._origin: Origin | None = None
        self._head = b""  # the header lines every request carries
        self._httpx: httpx.AsyncClient | None = None  # proxied, or a test's transport
        self._slots: asyncio.LifoQueue[Connection | None] | None = None
        self._open: set[Connection] = set()

    # ------------------------------------------------------------------ lifecycle

    def _setup(self) -> None:
        """Headers, TLS context and the way requests go, once per client."""
        config = self.config
        auth: dict[str, str] = {}
        parts = urllib.parse.urlsplit(config.url)
        if parts.username or parts.password:  # user:password@ in the URL: Basic, as httpx
            # (httpx/_client.py, _build_request_auth), unless bearer or basic_auth is set
            user, password = parts.username or "", parts.password or ""
            auth["Authorization"] = _basic(
                urllib.parse.unquote(user), urllib.parse.unquote(password)
            )
        token = read_secret(
            file=config.bearer_token_file, env=config.bearer_token_env, what="prometheus"
        )
        if token:
            auth["Authorization"] = f"Bearer {token}"
        if config.basic_auth is not None:
            password = read_secret(
                file=config.basic_auth.password_file,
                env=config.basic_auth.password_env,
                what="prometheus.basic_auth",
            )
            auth["Authorization"] = _basic(config.basic_auth.username, password or "")
        context = _tls_context(config) if parts.scheme == "https" else None
        defaults = {"Accept": "application/json", "User-Agent": "canary"}
        if self._transport is not None or _proxied(self.url):
            headers = _merged(defaults, config.headers, auth)
            self._httpx = httpx.AsyncClient(
                base_url=self.url,
                headers=headers,
                verify=True if context is None else context,
                timeout=httpx.Timeout(config.timeout),
                limits=httpx.Limits(max_connections=config.max_concurrency),
                transport=self._transport,
            )
        else:
            origin = Origin.of(self.url, context)
            headers = _merged({"Host": origin.host_header, **defaults}, config.headers, auth)
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            self._origin, self._head = origin, lines.encode("latin-1")
        self._ready = True

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        opened, self._open, self._slots = self._open, set(), None
        for connection in opened:
            connection.close()
        if self._httpx is not None:
            await self._httpx.aclose()
        self._httpx, self._ready = None, False

    # ------------------------------------------------------------------ API

    async def query(self, promql: str, at: datetime | float) -> QueryResult:
        """An instant query evaluated at `at` (always explicit: no 'now' surprises)."""
        data = {"query": promql, "time": _format_time(to_unix(at))}
        return await self._call("/api/v1/query", data, promql)

    async def query_range(
        self, promql: str, start: datetime | float, end: datetime | float, step: float
    ) -> QueryResult:
        """A range query from `start` to `end` every `step` seconds (a matrix)."""
        if step <= 0:
            raise ValueError("step must be positive")
        data = {
            "query": promql,
            "start": _format_time(to_unix(start)),
            "end": _format_time(to_unix(end)),
            "step": repr(float(step)),
        }
        return await self._call("/api/v1/query_range", data, promql)

    async def ready(self) -> bool:
        """True when the server answers queries.

        Tries Prometheus' `/-/ready`; backends without it (404) are asked the
        trivial query `1` instead. Never raises.
        """
        try:
            response = await self._exchange("GET", "/-/ready", None)
            if response.status_code == 200:
                return True
            if response.status_code in (404, 405):
                await self.query("1", time.time())
                return True
            return False
        except (OSError, PrometheusError):
            return False

    # ------------------------------------------------------------------ internals

    async def _call(self, path: str, data: dict[str, str], query: str) -> QueryResult:
        """POST a query, retrying timeouts, unreachable servers and HTTP 5xx."""
        url = self.url + path
        started = time.perf_counter()

        async def attempt(number: int) -> QueryResult:
            response = await self._post(path, data, query, url)
            return _with_timing(
                self._parse(response, query, url), time.perf_counter() - started, number
            )

        def on_retry(retry: int, delay: float, error: Exception) -> None:
            self.stats.retries += 1
            log.debug("retrying %s in %.2fs after: %s", path, delay, error)

        policy = RetryPolicy(self.config.retries, self.config.retry_backoff)
        return await retrying(attempt, policy, retryable=_retryable, on_retry=on_retry)

    async def _post(self, path: str, data: dict[str, str], query: str, url: str) -> _Answer:
        """One POST; a timeout, an unreachable server or HTTP 5xx as a PrometheusError."""
        try:
            response = await self._exchange("POST", path, data)
            self.stats.requests += 1
        except TimeoutError as exc:
            raise PrometheusTimeout(
                f"Prometheus at {self.url} did not answer within "
                f"{self.config.timeout:g}s ({exc or type(exc).__name__})",
                query=query,
                url=url,
            ) from None
        except OSError as exc:
            raise PrometheusUnreachable(
                f"Prometheus at {self.url} is unreachable: {_describe(exc)}",
                query=query,
                url=url,
            ) from None
        status = response.status_code
        if status >= 500:
            message = _server_message(response)
            raise PrometheusServerError(
                f"Prometheus answered HTTP {status}: {message}",
                query=query,
                url=url,
                status_code=status,
                server_message=message,
                error_type=_error_type(response),
            )
        return response

    async def _exchange(self, method: str, path: str, form: dict[str, str] | None) -> _Answer:
        """One request on a lent connection.

        Waiting for a free connection, connecting, waiting for the answer's head and
        each wait for more of its body may each take `timeout` (as httpx's pool,
        connect and read timeouts: httpx/_config.py, Timeout); a TimeoutError names
        the phase that took longer.
        OSError (ConnectionError) when the server cannot be reached or its answer
        does not frame. A kept-alive connection the server closed meanwhile is
        replaced once, transparently: queries are reads.
        """
        if not self._ready:
            self._setup()
        if self._httpx is not None:
            return await self._through_httpx(method, path, form)
        origin = self._origin
        assert origin is not None
        body = _form_body(form).encode() if form is not None else b""
        lines = f"{method} {origin.prefix}{path} HTTP/1.1\r\n".encode() + self._head
        if form is not None:
            lines += b"Content-Type: application/x-www-form-urlencoded\r\n"
        message = lines + b"Content-Length: %d\r\n\r\n" % len(body) + body
        connection = await self._lend()
        seconds = self.config.timeout
        started = time.perf_counter()  # the latency: from here (not queued) to the answer
        slots = self._slots
        assert slots is not None
        deadline: Deadline | None = None
        try:
            async with asyncio.timeout(seconds) as timer:
                deadline = Deadline(timer, seconds, "waiting for the answer")
                if connection is not None and not connection.usable:
                    self._discard(connection)
                    connection = None
                if connection is None:
                    connection = await self._connect(origin, deadline)
                try:
                    response = await connection.request(message, deadline)
                except ConnectionClosed:
                    if not connection.served:
                        raise
                    self._discard(connection)
                    connection = None
                    connection = await self._connect(origin, deadline)
                    response = await connection.request(message, deadline)
            if self._record:
                self.stats.latencies.append(time.perf_counter() - started)
            if not response.keep_alive:
                self._discard(connection)
                connection = None
            return response
        except BaseException as exc:
            if connection is not None:
                self._discard(connection)
                connection = None
            if isinstance(exc, TimeoutError) and deadline is not None:
                raise TimeoutError(deadline.phase) from None
            raise
        finally:
            slots.put_nowait(connection)

    async def _lend(self) -> Connection | None:
        """A free connection (None: one not opened yet), waiting at most `timeout`."""
        if self._slots is None:
            self._slots = asyncio.LifoQueue()
            for _ in range(self.config.max_concurrency):
                self._slots.put_nowait(None)  # a connection not opened yet
        try:
            return self._slots.get_nowait()
        except asyncio.QueueEmpty:
            pass
        try:
            async with asyncio.timeout(self.config.timeout):
                return await self._slots.get()
        except TimeoutError:
            raise TimeoutError(
                f"waiting for a free connection: all {self.config.max_concurrency} in use"
            ) from None

    async def _connect(self, origin: Origin, deadline: Deadline) -> Connection:
        """A new connection within `timeout`; the answer's wait starts afresh after it."""
        deadline.restart("connecting")
        connection = await Connection.open(origin)
        self._open.add(connection)
        deadline.restart("waiting for the answer")
        return connection

    def _discard(self, connection: Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def _through_httpx(
        self, method: str, path: str, form: dict[str, str] | None
    ) -> httpx.Response:
        assert self._httpx is not None
        try:
            started = time.perf_counter()
            response = await self._httpx.request(method, path, data=form)
            if self._record:
                self.stats.latencies.append(time.perf_counter() - started)
            return response
        except httpx.TimeoutException as exc:
            raise TimeoutError(type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise ConnectionError(_describe(exc)) from None

    def _parse(self, response: _Answer, query: str, url: str) -> QueryResult:
        status = response.status_code
        try:
            body = orjson.loads(response.content)
        except (orjson.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        if 400 <= status < 500:
            message = _server_message(response, body)
            raise PrometheusClientError(
                f"Prometheus refused the query (HTTP {status}): {message}",
                query=query,
                url=url,
                status_code=status,
                server_message=message,
                error_type=body.get("errorType") if isinstance(body, dict) else None,
            )
        if not isinstance(body, dict):
            excerpt = _excerpt(response.text)
            raise PrometheusBadResponse(
                f"Prometheus answered HTTP {status} with a body that is not JSON: {excerpt!r}",
                query=query,
                url=url,
                status_code=status,
                server_message=excerpt,
            )
        if body.get("status") != "success":
            message = str(body.get("error") or body.get("status") or "no status")
            raise PrometheusStatusError(
                f"Prometheus reported an error: {message}",
                query=query,
                url=url,
                status_code=status,
                server_message=message,
                error_type=body.get("errorType"),
            )
        warnings = [str(w) for w in body.get("warnings") or ()]
        for warning in warnings:
            log.warning("Prometheus warning for query %s: %s", " ".join(query.split()), warning)
        return _parse_data(body.get("data"), query, warnings, url)


def _parse_data(data: Any, query: str, warnings: list[str], url: str) -> QueryResult:
    def bad(what: str) -> PrometheusBadResponse:
        return PrometheusBadResponse(
            f"Prometheus answered with an unexpected shape: {what}", query=query, url=url
        )

    if not isinstance(data, dict) or "resultType" not in data:
        raise bad("no data.resultType")
    kind = data["resultType"]
    result = data.get("result")
    nonfinite = 0
    samples: list[Sample] = []
    series: list[RangeSeries] = []
    try:
        if kind == "vector":
            isfinite = math.isfinite
            for item in result:
                ts, raw = item["value"]
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    value = _value(raw, query)  # raises the descriptive error
                if not isfinite(value):
                    nonfinite += 1
                samples.append(Sample(item["metric"], value, ts))
        elif kind == "scalar":
            ts, raw = result
            value = _value(raw, query)
            nonfinite += not math.isfinite(value)
            samples.append(Sample({}, value, float(ts)))
        elif kind == "matrix":
            for item in result:
                points = []
                for ts, raw in item.get("values") or ():
                    value = _value(raw, query)
                    nonfinite += not math.isfinite(value)
                    points.append((float(ts), value))
                series.append(RangeSeries(dict(item.get("metric") or {}), points))
        elif kind == "string":
            pass
        else:
            raise bad(f"unknown resultType {kind!r}")
    except (TypeError, KeyError, ValueError) as exc:
        raise bad(f"{kind} result does not parse ({exc})") from None
    return QueryResult(
        query=query,
        result_type=kind,
        samples=samples,
        series=series,
        warnings=warnings,
        nonfinite=nonfinite,
    )


def _with_timing(result: QueryResult, seconds: float, attempts: int) -> QueryResult:
    return QueryResult(
        query=result.query,
        result_type=result.result_type,
        samples=result.samples,
        series=result.series,
        warnings=result.warnings,
        nonfinite=result.nonfinite,
        seconds=seconds,
        attempts=attempts,
    )


def _merged(*layers: Mapping[str, str]) -> dict[str, str]:
    """Headers of all `layers`, a later layer's replacing an earlier one's of the same
    name in any case (header names are case-insensitive, RFC 9110 section 5.1)."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def _basic(username: str, password: str) -> str:
    """An Authorization value for HTTP Basic (RFC 7617)."""
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _without_userinfo(url: str) -> str:
    """`url` without the `user:password@` of its authority (sent as Basic instead)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host)) if host != parts.netloc else url


#: `urllib.parse.quote_plus` of query texts, remembered: a canary's query text repeats
#: every round, and encoding it (a Python loop over its bytes) cost more than sending it.
_quote_query = functools.lru_cache(maxsize=4096)(urllib.parse.quote_plus)


def _form_body(form: Mapping[str, str]) -> str:
    """`urllib.parse.urlencode(form)`, with the encoded query text remembered (times
    change every call: remembering them would only push the queries out)."""
    return "&".join(
        f"{name}={_quote_query(value) if name == 'query' else urllib.parse.quote_plus(value)}"
        for name, value in form.items()
    )


def _format_time(seconds: float) -> str:
    return f"{seconds:.3f}"


def _proxied(url: str) -> bool:
    """Whether the environment names a proxy for `url` (as httpx and urllib read it)."""
    proxies = urllib.request.getproxies_environment()
    parts = urllib.parse.urlsplit(url)
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.netloc, proxies)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _error_type(response: _Answer) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("errorType") if isinstance(body, dict) else None


def _server_message(response: _Answer, body: Any = None) -> str:
    """The PromQL error text when the body is the API's JSON, else a body excerpt."""
    if body is None:
        try:
            body = response.json()
        except ValueError:
            body = None
    if isinstance(body, dict) and body.get("error"):
        kind = body.get("errorType")
        return f"{kind}: {body['error']}" if kind else str(body["error"])
    return _excerpt(response.text) or response.reason_phrase or "no message"


def _retryable(error: Exception) -> bool:
    """Retried: a timeout, an unreachable server, HTTP 5xx (not 4xx or a bad answer)."""
    return isinstance(error, PrometheusTimeout | PrometheusUnreachable | PrometheusServerError)
