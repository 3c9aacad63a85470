"""An async client for the Prometheus HTTP API (also Thanos, Mimir, VictoriaMetrics).

Only `/api/v1/query` (always with an explicit `time`) and `/api/v1/query_range` are
on the query path; both are served by every Prometheus-compatible backend. Queries
are sent as form-encoded POST bodies so long selectors never hit URL limits.

One client is shared by every canary of a process. It holds up to
`PrometheusConfig.max_concurrency` keep-alive connections, each in its own
single-connection httpx client, and lends one to each request: that bounds the
requests in flight, and no request pays for a pool scanning all connections (httpx's
pool does, per request and per connection, which cost a round of a thousand canaries
about a fifth of its CPU). Connection errors,
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
import contextlib
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
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
from canary.retry import RetryPolicy, retrying

__all__ = ["PrometheusClient", "QueryResult", "RangeSeries", "Sample", "to_unix"]

log = logging.getLogger("canary.metrics")


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
        self._transport = transport
        self._clients: list[httpx.AsyncClient] = []
        self._idle: asyncio.LifoQueue[httpx.AsyncClient | None] | None = None
        self._verify: bool | ssl.SSLContext | None = None
        self.stats = _Stats()
        self._record = record_latencies

    # ------------------------------------------------------------------ lifecycle

    def _build(self) -> httpx.AsyncClient:
        config = self.config
        headers = {"Accept": "application/json", "User-Agent": "canary"}
        headers.update(config.headers)
        token = read_secret(
            file=config.bearer_token_file, env=config.bearer_token_env, what="prometheus"
        )
        if token:
            headers["Authorization"] = f"Bearer {token}"
        auth = None
        if config.basic_auth is not None:
            password = read_secret(
                file=config.basic_auth.password_file,
                env=config.basic_auth.password_env,
                what="prometheus.basic_auth",
            )
            auth = httpx.BasicAuth(config.basic_auth.username, password or "")
        if self._verify is None:  # one TLS context for every connection
            if config.insecure_skip_verify:
                self._verify = False
            elif config.ca_file:
                self._verify = ssl.create_default_context(cafile=config.ca_file)
            else:
                self._verify = httpx.create_ssl_context()  # httpx's default trust
        return httpx.AsyncClient(
            base_url=config.url,
            headers=headers,
            auth=auth,
            verify=self._verify,
            timeout=httpx.Timeout(config.timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            transport=self._transport,
        )

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[httpx.AsyncClient]:
        """One connection for one request; waits while `max_concurrency` are lent.

        The most recently returned connection is lent first, so a quiet process keeps
        a few warm connections rather than cycling through all of them.
        """
        if self._idle is None:
            self._idle = asyncio.LifoQueue()
            for _ in range(self.config.max_concurrency):
                self._idle.put_nowait(None)  # a connection not opened yet
        idle = self._idle
        client = await idle.get()
        try:
            if client is None:
                client = self._build()
                self._clients.append(client)
            yield client
        finally:
            idle.put_nowait(client)

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients, self._idle = self._clients, [], None
        for client in clients:
            await client.aclose()

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
            async with self._lease() as client:
                response = await client.get("/-/ready")
            if response.status_code == 200:
                return True
            if response.status_code in (404, 405):
                await self.query("1", time.time())
                return True
            return False
        except (httpx.HTTPError, PrometheusError):
            return False

    # ------------------------------------------------------------------ internals

    async def _call(self, path: str, data: dict[str, str], query: str) -> QueryResult:
        """POST a query, retrying timeouts, unreachable servers and HTTP 5xx."""
        url = self.config.url + path
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

    async def _post(self, path: str, data: dict[str, str], query: str, url: str) -> httpx.Response:
        """One POST; a timeout, an unreachable server or HTTP 5xx as a PrometheusError."""
        try:
            async with self._lease() as client:
                t0 = time.perf_counter()
                response = await client.post(path, data=data)
                if self._record:
                    self.stats.latencies.append(time.perf_counter() - t0)
            self.stats.requests += 1
        except httpx.TimeoutException as exc:
            raise PrometheusTimeout(
                f"Prometheus at {self.config.url} did not answer within "
                f"{self.config.timeout:g}s ({type(exc).__name__})",
                query=query,
                url=url,
            ) from None
        except httpx.TransportError as exc:
            raise PrometheusUnreachable(
                f"Prometheus at {self.config.url} is unreachable: {_describe(exc)}",
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

    def _parse(self, response: httpx.Response, query: str, url: str) -> QueryResult:
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


def _format_time(seconds: float) -> str:
    return f"{seconds:.3f}"


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _error_type(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("errorType") if isinstance(body, dict) else None


def _server_message(response: httpx.Response, body: Any = None) -> str:
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
