"""Every error canary expects, in one hierarchy: each ends a command with a clear
one-line message naming what and where, and a defined exit code.

Exit codes (README): 0 ok, 1 a judged verdict of fail, 2 usage or configuration
error, 3 runtime error (database, Prometheus, Kubernetes unreachable ...)::

    CanaryError                       exit 3
    ├── UsageError                    exit 2: the user's input or configuration
    │   ├── NotFoundError             an analysis id or canary name that does not exist
    │   ├── ConfigError               a configuration, a key path per problem
    │   ├── AnalysisInputError        `canary judge` input JSON
    │   ├── TemplateError             a query template
    │   └── KubeconfigError           a kubeconfig or in-cluster environment
    ├── MetricsError                  no usable numbers for a round
    │   ├── PrometheusError           the HTTP API's answer (Unreachable, Timeout,
    │   │                             ClientError, ServerError, BadResponse, StatusError)
    │   └── MetricsDataError          numbers that contradict each other
    ├── TrafficError                  moving traffic
    │   ├── DriftError                someone else moved the weights
    │   ├── ResourceNotFound, Forbidden, Unauthorized, Conflict, KubeApiError
    │   └── InvalidWeights            (also a UsageError, exit 2)
    ├── DatabaseError                 the database cannot be used
    │   └── SchemaError               its schema is not this version's
    ├── StoredDataError               a stored analysis that cannot be read as recorded
    ├── JudgeStateError               a judge state (JSON) its judge cannot read
    ├── RoundConflict                 another process recorded the round first
    └── DaemonAlreadyRunning          another daemon holds the SQLite database

The HTTP API answers with `canary.api.errors.ApiError` (a status, a message, a
field), which is an HTTP answer rather than a command's end and lives with the API.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EXIT_FAIL_VERDICT",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "AnalysisInputError",
    "CanaryError",
    "ConfigError",
    "Conflict",
    "DaemonAlreadyRunning",
    "DatabaseError",
    "DriftError",
    "Forbidden",
    "InvalidWeights",
    "JudgeStateError",
    "KubeApiError",
    "KubeconfigError",
    "MetricsDataError",
    "MetricsError",
    "NotFoundError",
    "PrometheusBadResponse",
    "PrometheusClientError",
    "PrometheusError",
    "PrometheusServerError",
    "PrometheusStatusError",
    "PrometheusTimeout",
    "PrometheusUnreachable",
    "ResourceNotFound",
    "RoundConflict",
    "SchemaError",
    "StoredDataError",
    "TemplateError",
    "TrafficError",
    "Unauthorized",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAIL_VERDICT = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


class CanaryError(Exception):
    """Base of every expected error; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_RUNTIME


# --------------------------------------------------------------------------- usage


class UsageError(CanaryError):
    """Bad arguments or input given by the user."""

    exit_code = EXIT_USAGE


class NotFoundError(UsageError):
    """An id or name that does not exist."""


class ConfigError(UsageError):
    """A configuration that cannot be used; `problems` are ``(key path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "configuration") -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{path}: {message}" if path else message for path, message in self.problems]
        return "\n".join(lines)


class AnalysisInputError(UsageError):
    """Malformed analysis JSON; the message names the source, line and field."""


class TemplateError(UsageError):
    """A query template that is missing, unreadable or cannot be rendered."""


class KubeconfigError(UsageError):
    """A kubeconfig or in-cluster environment that cannot be used."""


# --------------------------------------------------------------------------- metrics


class MetricsError(CanaryError):
    """Base of every failure to obtain a round's numbers (exit code 3 in the CLI).

    An empty query result is *not* an error: it is "no data".
    """

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


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- traffic


class TrafficError(CanaryError):
    """Base of every error moving traffic (`canary.traffic`); exits 3 from the CLI."""


class DriftError(TrafficError):
    """The weights differ from our last recorded write: someone else moved traffic.

    `actual` are the weights read (`canary.traffic.base.Weights`), `record` our last
    write (`canary.traffic.base.WriteRecord`); the message names both.
    """

    def __init__(self, resource: str, actual: Any, record: Any) -> None:
        self.resource, self.actual, self.record = resource, actual, record
        by = f"analysis {record.analysis} step {record.step}" if record.analysis else record.by
        super().__init__(
            f"drift on {resource}: weights are canary={actual.canary} stable={actual.stable}"
            f" but we last wrote canary={record.weights.canary} stable={record.weights.stable}"
            f" ({by}, {record.at}); not overwriting — someone else changed the weights"
        )


class ResourceNotFound(TrafficError):
    """A resource (or a route inside it) that does not exist."""

    def __init__(self, resource: str, verb: str, detail: str = "") -> None:
        self.resource, self.verb, self.detail = resource, verb, detail
        message = f"cannot {verb} {resource}: not found"
        super().__init__(f"{message} ({detail})" if detail else message)


class Forbidden(TrafficError):
    """RBAC denied a verb on a resource."""

    def __init__(self, resource: str, verb: str, detail: str = "") -> None:
        self.resource, self.verb, self.detail = resource, verb, detail
        message = f"forbidden to {verb} {resource}; check the RBAC rules (deploy/kubernetes)"
        super().__init__(f"{message}: {detail}" if detail else message)


class Unauthorized(TrafficError):
    """The API server rejected our credentials (401), even after re-reading the token."""

    def __init__(self, resource: str, verb: str, detail: str = "") -> None:
        self.resource, self.verb, self.detail = resource, verb, detail
        message = f"unauthorized to {verb} {resource}: the API server rejected the credentials"
        super().__init__(f"{message} ({detail})" if detail else message)


class Conflict(TrafficError):
    """A write kept meeting concurrent writers (409) until the retries ran out."""

    def __init__(self, resource: str, verb: str, attempts: int, detail: str = "") -> None:
        self.resource, self.verb, self.attempts, self.detail = resource, verb, attempts, detail
        message = f"cannot {verb} {resource}: conflicting concurrent writes"
        message += f" ({attempts} attempt{'s' if attempts != 1 else ''})"
        super().__init__(f"{message}: {detail}" if detail else message)


class KubeApiError(TrafficError):
    """The API server failed (5xx, timeouts, unreachable) after retries, or refused oddly."""

    def __init__(
        self, resource: str, verb: str, status: int | None, detail: str = "", attempts: int = 1
    ) -> None:
        self.resource, self.verb, self.status = resource, verb, status
        self.detail, self.attempts = detail, attempts
        what = f"HTTP {status}" if status is not None else "no answer"
        message = f"cannot {verb} {resource}: {what}"
        if attempts > 1:
            message += f" after {attempts} attempts"
        super().__init__(f"{message}: {detail}" if detail else message)


class InvalidWeights(TrafficError, UsageError):
    """Weights that are not integers in 0..100 summing to 100, or rejected by the server."""

    exit_code = UsageError.exit_code


# --------------------------------------------------------------------------- store, daemon


class DatabaseError(CanaryError):
    """The database cannot be reached or the URL is unusable."""


class SchemaError(DatabaseError):
    """The database schema is not the one this version of canary needs."""


class StoredDataError(CanaryError):
    """A stored analysis whose recorded values cannot be read (edited by hand, or written
    by another version): the message names the analysis, the round and the field."""

    def __init__(self, analysis_id: str, where: str, message: str) -> None:
        self.analysis_id, self.where = analysis_id, where
        super().__init__(f"analysis {analysis_id}: {where}: {message}")


class JudgeStateError(CanaryError):
    """A judge state, stored as JSON with its analysis, that its judge cannot read:
    `field` is the path within the state (``values.errors.canary[2]``). The round
    pipeline reports it as a `StoredDataError` naming the analysis."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.problem = field, message
        super().__init__(f"judge state: {field}: {message}")


class RoundConflict(CanaryError):
    """Another process recorded this (analysis, round index) first."""


class DaemonAlreadyRunning(CanaryError):
    """Another daemon holds the SQLite database (SQLite supports a single daemon)."""
