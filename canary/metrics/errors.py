"""Typed errors of the metrics layer; each carries the query and the server's message.

An empty query result is *not* an error: it is "no data" (see `QueryResult.empty`).
"""

from __future__ import annotations

from canary.errors import CanaryError, UsageError

__all__ = [
    "MetricsDataError",
    "MetricsError",
    "PrometheusBadResponse",
    "PrometheusClientError",
    "PrometheusError",
    "PrometheusServerError",
    "PrometheusStatusError",
    "PrometheusTimeout",
    "PrometheusUnreachable",
    "TemplateError",
]


class MetricsError(CanaryError):
    """Base of every failure to obtain a round's numbers (exit code 3 in the CLI)."""

    def __init__(self, message: str, *, query: str | None = None) -> None:
        self.message = message
        self.query = query
        super().__init__(message if query is None else f"{message} (query: {_short(query)})")


class PrometheusError(MetricsError):
    """The Prometheus HTTP API did not give a usable answer.

    `url` is the endpoint called, `status_code` the HTTP status when there was one,
    `server_message` the text the server sent (PromQL error text, body excerpt).
    """

    def __init__(
        self,
        message: str,
        *,
        query: str | None = None,
        url: str | None = None,
        status_code: int | None = None,
        server_message: str | None = None,
        error_type: str | None = None,
    ) -> None:
        self.url = url
        self.status_code = status_code
        self.server_message = server_message
        self.error_type = error_type
        super().__init__(message, query=query)


class PrometheusUnreachable(PrometheusError):
    """No connection (refused, DNS, TLS, or the connection was closed without an answer)."""


class PrometheusTimeout(PrometheusError):
    """No answer within the configured timeout."""


class PrometheusClientError(PrometheusError):
    """HTTP 4xx: the query or request is wrong (bad PromQL, auth); never retried."""


class PrometheusServerError(PrometheusError):
    """HTTP 5xx after the configured retries."""


class PrometheusBadResponse(PrometheusError):
    """A body that is not the JSON the API promises (garbage, HTML, wrong shape)."""


class PrometheusStatusError(PrometheusError):
    """A 2xx answer whose JSON says `"status": "error"`."""


class MetricsDataError(MetricsError):
    """The numbers are there but inconsistent (e.g. histogram buckets of pods disagree)."""


class TemplateError(UsageError):
    """A query template that is missing, unreadable or cannot be rendered."""


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
