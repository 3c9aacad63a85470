"""TOML configuration -> validated, immutable models.

Every problem is reported with its key path (``canary[1].steps[2].weight: ...``),
unknown keys are errors, and secrets are read from files or environment variables.
`config.example.toml` at the repository root documents every key.

Each `[[canary]]` table inherits every analysis setting it does not set itself from
`[defaults]` (a shallow merge: a canary's `metrics` or `steps` list replaces the
default list as a whole).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from canary.errors import ConfigError
from canary.model import MetricKind
from canary.promregex import regex_problem

__all__ = [
    "METRIC_TYPES",
    "AnalysisSettings",
    "ArmConfig",
    "CanaryConfig",
    "Config",
    "DatabaseConfig",
    "DestinationConfig",
    "KubernetesConfig",
    "MannWhitneyMetric",
    "MetricBase",
    "MetricConfig",
    "PrometheusConfig",
    "SequentialMetric",
    "ServerConfig",
    "StepConfig",
    "ThresholdMetric",
    "TrafficConfig",
    "WebhookConfig",
    "default_data_dir",
    "load_config",
    "metric_config",
    "parse_config",
    "parse_duration",
    "read_secret",
    "settings_for_judge",
]


# --------------------------------------------------------------------------- value types

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The longest duration accepted anywhere (seconds): longer is a typo, and schedulers
#: and datetimes overflow on values like "999999999999d".
MAX_DURATION = 365 * 86400.0


def parse_duration(value: Any) -> float:
    """Seconds from ``"90s"``, ``"2m"``, ``"1h30m"``, ``"500ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s' or '2m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or _DURATION_PART.sub("", text) != "":
            raise ValueError(f"invalid duration {value!r}: use e.g. '30s', '2m', '1h30m'")
        seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        raise ValueError("expected a duration such as '30s' or '2m'")
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {value!r}: must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION:
        raise ValueError(f"invalid duration {value!r}: longer than 365 days")
    return seconds


#: A duration in seconds, written in TOML as "30s", "2m", "1h30m" or a number.
Duration = Annotated[float, BeforeValidator(parse_duration)]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: Prometheus label names: https://prometheus.io/docs/concepts/data_model/
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def read_secret(*, file: str | None, env: str | None, what: str) -> str | None:
    """The secret from a file (whitespace stripped) or an environment variable."""
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([(what, f"cannot read secret file {file}: {exc.strerror}")]) from exc
        except UnicodeDecodeError:
            raise ConfigError([(what, f"secret file {file} is not UTF-8 text")]) from None
    if env:
        return os.environ.get(env) or None
    return None


def default_data_dir() -> Path:
    """Where the embedded SQLite database and reports live by default."""
    if env := os.environ.get("CANARY_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "canary"


#: RFC 9110 field names (tokens); values must not carry CR, LF or other controls.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Headers that frame a request or its connection: canary sets them for each request.
_FRAMING_HEADERS = frozenset({"connection", "content-length", "content-type", "transfer-encoding"})


def http_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL with a host and nothing to escape."""
    import httpx

    if _CONTROL.search(value) or re.search(r"\s", value):
        raise ValueError(
            f"must be an http(s) URL without spaces or control characters, got {value!r}"
        )
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"must be an http(s) URL, got {value!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


#: Database URL schemes canary can use (SQLite embedded, PostgreSQL through psycopg 3).
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg", "postgres")


def database_scheme_problem(url: str) -> str | None:
    """Why `url` is not a database URL canary can use (None when it is)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in DATABASE_SCHEMES:
        shown = scheme or url.split(":", 1)[0]
        return (
            f"unsupported database URL scheme {shown!r}: use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        )
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sections


class BasicAuth(_Model):
    username: str
    password_file: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BasicAuth:
        if not (self.password_file or self.password_env):
            raise ValueError("set password_file or password_env")
        return self


class PrometheusConfig(_Model):
    """Where metrics come from (Prometheus, Thanos, Mimir, VictoriaMetrics)."""

    url: str = "http://127.0.0.1:9090"
    timeout: Duration = 10.0
    bearer_token_file: str | None = None
    bearer_token_env: str | None = None
    basic_auth: BasicAuth | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    headers: dict[str, str] = Field(default_factory=dict)
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff: Duration = 0.2
    templates_dir: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value).rstrip("/")

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in _FRAMING_HEADERS:
                raise ValueError(f"{name}: this header is set by canary for each request")
            if _CONTROL.search(value):
                raise ValueError(f"header {name}: control characters (CR, LF, NUL) in the value")
        return headers


class DatabaseConfig(_Model):
    """SQLite (embedded default, one process) or PostgreSQL (shared by replicas)."""

    url: str | None = None
    url_file: str | None = None
    url_env: str | None = "CANARY_DATABASE_URL"
    data_dir: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and (problem := database_scheme_problem(value)):
            raise ValueError(problem)
        return value

    def resolved_url(self) -> str:
        """The URL to connect to: file, then env var, then `url`, then the SQLite default."""
        secret = read_secret(file=self.url_file, env=self.url_env, what="database.url")
        if secret:
            return secret
        if self.url:
            return self.url
        data_dir = Path(self.data_dir) if self.data_dir else default_data_dir()
        return f"sqlite:///{data_dir / 'canary.db'}"


class ServerConfig(_Model):
    listen: str = "127.0.0.1:8080"
    api_token_file: str | None = None
    api_token_env: str | None = "CANARY_API_TOKEN"
    max_body_bytes: int = Field(default=65536, ge=1024)
    read_timeout: Duration = Field(default=10.0, gt=0, le=3600)
    max_connections: int = Field(default=256, ge=1, le=100000)
    new_analyses_per_minute: int = Field(default=30, ge=1, le=100000)
    max_running_analyses: int = Field(default=500, ge=1, le=1000000)
    public_docs: bool = False
    page_session_ttl: Duration = Field(default=28800.0, gt=0, le=30 * 86400)
    trust_forwarded_proto: bool = False

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def api_tokens(self) -> list[str]:
        """Accepted bearer tokens (one per line in the file, or the env var)."""
        secret = read_secret(file=self.api_token_file, env=self.api_token_env, what="server")
        return [line.strip() for line in (secret or "").splitlines() if line.strip()]


class KubernetesConfig(_Model):
    """How to reach the Kubernetes API; `memory` uses the in-process router (demo)."""

    mode: Literal["auto", "in-cluster", "kubeconfig", "memory"] = "auto"
    kubeconfig: str | None = None
    context: str | None = None
    dry_run: bool = False
    timeout: Duration = 10.0
    retries: int = Field(default=3, ge=0, le=10)


class WebhookConfig(_Model):
    """A notification target; `format = "slack"` posts a Slack-compatible payload."""

    url: str | None = None
    url_env: str | None = None
    url_file: str | None = None
    format: Literal["json", "slack"] = "json"
    events: list[
        Literal["started", "advanced", "promoted", "rolled_back", "inconclusive", "halted"]
    ] = Field(
        default_factory=lambda: [
            "started",
            "advanced",
            "promoted",
            "rolled_back",
            "inconclusive",
            "halted",
        ]
    )
    timeout: Duration = 5.0
    retries: int = Field(default=3, ge=0, le=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    @model_validator(mode="after")
    def _one_source(self) -> WebhookConfig:
        if not (self.url or self.url_env or self.url_file):
            raise ValueError("set url, url_env or url_file")
        return self

    def resolved_url(self) -> str | None:
        return read_secret(file=self.url_file, env=self.url_env, what="webhook.url") or self.url


# --------------------------------------------------------------------------- per canary


class DestinationConfig(_Model):
    """A route destination: an Istio host (and subset), or an HTTPRoute's backend Service
    (``host`` = the Service name, ``name.namespace`` for another namespace)."""

    host: str
    subset: str | None = None


class TrafficConfig(_Model):
    """The route whose weights canary moves: a VirtualService http route (default) or a
    Gateway API HTTPRoute rule (``kind = "HTTPRoute"``)."""

    kind: Literal["VirtualService", "HTTPRoute"] = "VirtualService"
    virtual_service: str | None = None
    route: str | None = None  # the http route's `name`; None: find it by destinations
    http_route: str | None = None
    rule: str | None = None  # the HTTPRoute rule's `name`; None: find it by backendRefs
    canary: DestinationConfig
    stable: DestinationConfig

    @model_validator(mode="after")
    def _one_kind(self) -> TrafficConfig:
        if self.kind == "VirtualService":
            if not self.virtual_service:
                raise ValueError("virtual_service: required with kind = 'VirtualService'")
            for key in ("http_route", "rule"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only for kind = 'HTTPRoute'")
        else:
            if not self.http_route:
                raise ValueError("http_route: required with kind = 'HTTPRoute'")
            for key in ("virtual_service", "route"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only for kind = 'VirtualService'")
            for arm in ("canary", "stable"):
                if getattr(self, arm).subset is not None:
                    raise ValueError(
                        f"{arm}.subset: an HTTPRoute routes to Services; name the backend"
                        " Service in host"
                    )
        return self

    @property
    def resource_name(self) -> str:
        """The routed resource's name (VirtualService or HTTPRoute)."""
        return (self.virtual_service if self.kind == "VirtualService" else self.http_route) or ""

    @property
    def route_name(self) -> str | None:
        """The configured route (VirtualService) or rule (HTTPRoute) name, if any."""
        return self.route if self.kind == "VirtualService" else self.rule


class ArmConfig(_Model):
    """Prometheus label matchers that select one arm's series."""

    match: dict[str, str] = Field(default_factory=dict)
    match_regex: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_labels(self) -> ArmConfig:
        for label in (*self.match, *self.match_regex):
            if not LABEL_NAME.match(label):
                raise ValueError(f"invalid Prometheus label name {label!r}")
        for label, pattern in self.match_regex.items():
            if problem := regex_problem(pattern):
                raise ValueError(f"match_regex.{label}: {problem}")
        if not (self.match or self.match_regex):
            raise ValueError("an arm needs at least one label matcher (match or match_regex)")
        return self


class StepConfig(_Model):
    weight: int = Field(ge=1, le=100)
    duration: Duration


class MetricBase(_Model):
    """What every judge reads of a metric: its name, kind and how it is queried."""

    name: str
    kind: MetricKind = MetricKind.COUNTS
    query: str | None = None  # template name; default by kind (see canary.metrics.queries)
    failure_codes: str = "5.."  # regex on response_code for counts metrics
    # sequential: histogram bounds near these baseline quantiles; mann_whitney and
    # threshold: one quantile, the per-round value of a histogram
    quantiles: list[float] | None = None

    @field_validator("name")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_-]*$", value):
            raise ValueError(f"invalid metric name {value!r}: letters, digits, '_' and '-'")
        return value

    @field_validator("failure_codes")
    @classmethod
    def _regex(cls, value: str) -> str:
        if problem := regex_problem(value):
            raise ValueError(problem)
        return value


class SequentialMetric(MetricBase):
    """A metric judged by the sequential judge (docs/judge.md)."""

    # The analysis's judge, set by AnalysisSettings; not part of a metric's dump.
    judge: Literal["sequential"] = Field(default="sequential", exclude=True, repr=False)
    alpha_fail: float | None = Field(default=None, gt=0, lt=1)
    alpha_pass: float | None = Field(default=None, gt=0, lt=1)
    tolerance: float | None = Field(default=None, gt=0)
    margin: float | None = Field(default=None, gt=0)
    fail_grid: list[float] | None = None
    pass_grid: list[float] | None = None
    min_requests: int | None = Field(default=None, ge=0)
    # FAIL also needs evidence valid without independent requests (docs/judge.md)
    robust: bool | None = None
    # round-to-round coefficient of variation of an error rate assumed at the first
    # round, before the baseline's own rounds show it; the most pod spread allowed for
    robust_cv: float | None = Field(default=None, ge=0)


class MannWhitneyMetric(MetricBase):
    """A metric judged by the mann_whitney judge (docs/judges-kayenta-threshold.md)."""

    judge: Literal["mann_whitney"] = Field(default="mann_whitney", exclude=True, repr=False)
    direction: Literal["increase", "decrease", "either"] | None = None
    critical: bool | None = None
    must_have_data: bool | None = None
    nan_strategy: Literal["remove", "replace"] | None = None
    effect_size: dict[str, float | str] | None = None  # keys: see canary.judge.kayenta
    outlier_strategy: Literal["remove", "keep"] | None = None
    group: str | None = None


class ThresholdMetric(MetricBase):
    """A metric judged by the threshold judge (docs/judges-kayenta-threshold.md)."""

    judge: Literal["threshold"] = Field(default="threshold", exclude=True, repr=False)
    min: float | None = None
    max: float | None = None
    failure_limit: int | None = Field(default=None, ge=0)
    consecutive: bool | None = None
    no_data: Literal["inconclusive", "fail", "pass"] | None = None


#: The metric model of each judge.
METRIC_TYPES: dict[str, type[MetricBase]] = {
    "sequential": SequentialMetric,
    "mann_whitney": MannWhitneyMetric,
    "threshold": ThresholdMetric,
}

#: One metric to judge: the keys it may carry are those of the analysis's judge.
MetricConfig = Annotated[
    SequentialMetric | MannWhitneyMetric | ThresholdMetric, Field(discriminator="judge")
]

_METRIC_ADAPTER: TypeAdapter[MetricConfig] = TypeAdapter(MetricConfig)

#: The metrics an analysis judges when it lists none.
_DEFAULT_METRICS = (
    {"name": "errors", "kind": MetricKind.COUNTS.value},
    {"name": "latency", "kind": MetricKind.HISTOGRAM.value},
)


def metric_config(judge: str, data: Mapping[str, Any]) -> MetricConfig:
    """The metric `data` describes, for `judge`; ValidationError as in a configuration."""
    return _METRIC_ADAPTER.validate_python({**data, "judge": judge})


def settings_for_judge(data: Mapping[str, Any], judge: str) -> dict[str, Any]:
    """Settings (an analysis's or a whole canary's) for `judge`, each metric keeping only
    the keys a metric of that judge has.

    How recorded settings are read: before metrics were typed per judge, every stored
    metric carried every judge's keys (those its judge did not use were null or
    ignored). Replay's ``--judge`` also uses it to judge recorded metrics anew.
    """
    keys = set(METRIC_TYPES[judge].model_fields) - {"judge"} if judge in METRIC_TYPES else None
    out = {**data, "judge": judge}
    metrics = data.get("metrics")
    if keys is not None and isinstance(metrics, list):
        out["metrics"] = [
            {k: v for k, v in m.items() if k in keys} if isinstance(m, Mapping) else m
            for m in metrics
        ]
    return out


def _default_steps() -> list[StepConfig]:
    return [
        StepConfig(weight=10, duration=120),
        StepConfig(weight=20, duration=120),
        StepConfig(weight=50, duration=300),
    ]


class AnalysisSettings(_Model):
    """Settings every canary inherits from `[defaults]` unless it sets them itself."""

    interval: Annotated[Duration, Field(gt=0)] = 60.0
    judge: Literal["sequential", "mann_whitney", "threshold"] = "sequential"
    steps: list[StepConfig] = Field(default_factory=_default_steps)
    # Each metric is checked against the model of `judge` (see _metrics_of_the_judge);
    # without metrics, _DEFAULT_METRICS.
    metrics: list[MetricConfig]
    max_duration: Duration | None = 3600.0  # the budget; None: only max_rounds
    max_rounds: int | None = Field(default=None, ge=1)
    promotion: Literal["evidence", "no-failure"] = "evidence"
    on_inconclusive: Literal["rollback", "hold"] = "rollback"
    max_failed_rounds: int = Field(default=3, ge=1)
    on_failed_rounds: Literal["halt", "rollback"] = "halt"
    # "waypoint": ambient mode, L7 metrics from waypoint proxies (canary.metrics.series_keys)
    reporter: Literal["destination", "source", "waypoint"] = "destination"
    pod_label: str = "pod"
    revision_label: str = "destination_canonical_revision"
    destination_pod_label: str | None = None  # ambient: a label naming the destination pod
    # ambient: how often Prometheus scrapes the waypoints (the resolution of restart tracing)
    scrape_interval: Duration = Field(default=15.0, gt=0)
    auto_start: bool = False
    jitter: Duration = 0.0
    pass_score: float = Field(default=95.0, ge=0, le=100)  # mann_whitney score thresholds
    marginal_score: float = Field(default=75.0, ge=0, le=100)
    # mann_whitney: weight (percent) per metric `group`; unlisted groups share the rest
    group_weights: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _metrics_of_the_judge(cls, data: Any) -> Any:
        """Tag each metric with the analysis's judge: its keys are checked against that
        judge's metric model (a key of another judge is refused)."""
        if not isinstance(data, Mapping):
            return data
        judge = data.get("judge", "sequential")
        metrics = data.get("metrics", [dict(m) for m in _DEFAULT_METRICS])
        if judge not in METRIC_TYPES or not isinstance(metrics, list):
            return {**data, "metrics": metrics}
        return {
            **data,
            "metrics": [{"judge": judge, **m} if isinstance(m, Mapping) else m for m in metrics],
        }

    @classmethod
    def from_recorded(cls, data: Mapping[str, Any], judge: str | None = None) -> Self:
        """The settings an analysis recorded (`judge`: the judge it ran with, else the
        recorded `judge`). Recorded keys that are not settings are left out, and so are
        metric keys of other judges, which records from before metrics were typed per
        judge carry (`settings_for_judge`)."""
        fields = {k: v for k, v in data.items() if k in cls.model_fields}
        judge = judge or str(fields.get("judge", "sequential"))
        return cls.model_validate(settings_for_judge(fields, judge))

    @model_validator(mode="after")
    def _one_judge(self) -> AnalysisSettings:
        for number, metric in enumerate(self.metrics):
            if metric.judge != self.judge:
                raise ValueError(
                    f"metrics[{number}].judge: the judge is chosen for the whole analysis"
                    f" (judge = {self.judge!r}), not per metric"
                )
        return self

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[StepConfig]) -> list[StepConfig]:
        if not steps:
            raise ValueError("at least one step is needed")
        for before, after in itertools.pairwise(steps):
            if after.weight <= before.weight:
                raise ValueError("step weights must increase from one step to the next")
        return steps

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, metrics: list[MetricConfig]) -> list[MetricConfig]:
        if not metrics:
            raise ValueError("at least one metric is needed")
        names = [m.name for m in metrics]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"duplicate metric names: {', '.join(duplicates)}")
        return metrics

    @field_validator("pod_label", "revision_label", "destination_pod_label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and not LABEL_NAME.match(value):
            raise ValueError(f"invalid Prometheus label name {value!r}")
        return value


class CanaryConfig(AnalysisSettings):
    """A configured target: where its traffic goes and how its arms are selected."""

    name: str
    namespace: str
    traffic: TrafficConfig
    arms: dict[Literal["canary", "baseline"], ArmConfig]

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must be a DNS label (lowercase letters, digits, '-')")
        return value

    @field_validator("arms")
    @classmethod
    def _both_arms(cls, arms: dict[str, ArmConfig]) -> dict[str, ArmConfig]:
        missing = {"canary", "baseline"} - set(arms)
        if missing:
            raise ValueError(f"missing arm(s): {', '.join(sorted(missing))}")
        return arms

    @model_validator(mode="after")
    def _arms_by_destination_in_ambient_mode(self) -> CanaryConfig:
        if self.reporter != "waypoint":
            return self
        for name, arm in self.arms.items():
            if self.pod_label in (*arm.match, *arm.match_regex):
                raise ValueError(
                    f"arms.{name}: with reporter = 'waypoint' the {self.pod_label!r} label is"
                    " the waypoint's pod; tell the arms apart by destination labels"
                    " (destination_workload, destination_canonical_revision, ...)"
                )
        return self

    def settings(self) -> AnalysisSettings:
        """This canary's analysis settings alone (what an analysis records)."""
        return AnalysisSettings.model_validate(
            self.model_dump(include=set(AnalysisSettings.model_fields))
        )


class Config(_Model):
    """The whole configuration file."""

    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    defaults: AnalysisSettings = Field(default_factory=AnalysisSettings)
    canary: list[CanaryConfig] = Field(default_factory=list)
    webhook: list[WebhookConfig] = Field(default_factory=list)

    @field_validator("canary")
    @classmethod
    def _unique_names(cls, canaries: list[CanaryConfig]) -> list[CanaryConfig]:
        names = [c.name for c in canaries]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"duplicate canary names: {', '.join(duplicates)}")
        return canaries

    def get_canary(self, name: str) -> CanaryConfig:
        for canary in self.canary:
            if canary.name == name:
                return canary
        known = ", ".join(c.name for c in self.canary) or "none configured"
        raise ConfigError([("canary", f"no canary named {name!r} (known: {known})")])


# --------------------------------------------------------------------------- loading


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def validation_problems(
    error: ValidationError, prefix: tuple[int | str, ...] = ()
) -> list[tuple[str, str]]:
    """The one reading of a pydantic error: (key path, message) per problem.

    Paths read as in TOML (``canary[0].steps``); "unknown key", "not a key of a
    sequential metric" and "required key is missing" replace pydantic's wording. Every
    CLI message about bad settings (the configuration, `--set`, `canary judge` input,
    recorded settings) uses it.
    """
    problems = []
    for item in error.errors():
        loc, judge = _metric_loc(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key" if judge is None else _foreign_key(str(loc[-1]), judge)
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "union_tag_invalid":
            loc += ("judge",)
            message = "the judge is chosen for the whole analysis, not per metric"
        elif item["type"] == "union_tag_not_found":  # the analysis's judge is not valid
            message = "not checked: no valid judge"
        problems.append((_key_path(prefix + loc), message))
    return problems


def _metric_loc(loc: tuple[int | str, ...]) -> tuple[tuple[int | str, ...], str | None]:
    """`loc` without pydantic's internal tags, and the judge whose metric it is in."""
    judge = None
    out: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and "[" in part:
            continue  # e.g. 'function-after[...]'
        if part in METRIC_TYPES and (not out or isinstance(out[-1], int)):
            judge = str(part)  # the tag of the metric union, after a metric's index
            continue
        out.append(part)
    return tuple(out), judge


def _foreign_key(key: str, judge: str) -> str:
    owners = [name for name, model in METRIC_TYPES.items() if key in model.model_fields]
    owner = f" (a key of {' and '.join(owners)} metrics)" if owners and key != "judge" else ""
    return f"not a key of a {judge} metric{owner}"


def parse_config(raw: Mapping[str, Any], source: str = "configuration") -> Config:
    """Validate an already-parsed TOML document; raise ConfigError with key paths.

    `[defaults]` metrics are checked against the judge of each canary that inherits
    them (one that lists no metrics of its own); a problem there is named at
    ``defaults.metrics[i]`` with the canary that inherits it. `Config.defaults` (the
    settings for a canary the file does not name) keeps only its own judge's keys.
    """
    raw = dict(raw)
    defaults_raw = raw.get("defaults", {})
    if not isinstance(defaults_raw, Mapping):
        raise ConfigError([("defaults", "must be a table")], source)
    canaries = raw.get("canary", [])
    inheriting = _inheriting(canaries, defaults_raw)
    raw["defaults"] = _defaults_alone(defaults_raw, bool(inheriting))
    try:
        AnalysisSettings.model_validate(raw["defaults"])
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, ("defaults",)), source) from None

    if isinstance(canaries, list):
        raw["canary"] = [
            {**defaults_raw, **entry} if isinstance(entry, Mapping) else entry for entry in canaries
        ]
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = [_inherited(p, m, inheriting) for p, m in validation_problems(exc)]
        raise ConfigError(problems, source) from None


def _inheriting(canaries: Any, defaults: Mapping[str, Any]) -> dict[int, str]:
    """Index -> judge of each canary that inherits the `[defaults]` metrics."""
    if not isinstance(canaries, list):
        return {}
    judge = defaults.get("judge", "sequential")
    return {
        index: str(entry.get("judge", judge))
        for index, entry in enumerate(canaries)
        if isinstance(entry, Mapping) and "metrics" not in entry
    }


def _defaults_alone(defaults: Mapping[str, Any], inherited: bool) -> dict[str, Any]:
    """`[defaults]` as the settings of its own judge. When canaries inherit its metrics,
    without the keys of other judges: each inheriting canary checks those against its
    own judge."""
    own = METRIC_TYPES.get(str(defaults.get("judge", "sequential")))
    metrics = defaults.get("metrics")
    if own is None or not inherited or not isinstance(metrics, list):
        return dict(defaults)
    every = {key for model in METRIC_TYPES.values() for key in model.model_fields}
    foreign = every - set(own.model_fields)
    return {
        **defaults,
        "metrics": [
            {k: v for k, v in m.items() if k not in foreign} if isinstance(m, Mapping) else m
            for m in metrics
        ],
    }


def _inherited(path: str, message: str, inheriting: Mapping[int, str]) -> tuple[str, str]:
    """A problem in a canary's inherited metrics, named where it is written."""
    for index, judge in inheriting.items():
        prefix = f"canary[{index}].metrics"
        if path == prefix or path.startswith(prefix + "["):
            where = f"canary[{index}] inherits it (judge = {judge!r})"
            return "defaults.metrics" + path[len(prefix) :], f"{message}; {where}"
    return path, message


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a TOML file; None gives the embedded defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror}")], str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [("", f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8")], str(path)
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", f"{path}: invalid TOML: {exc}")], str(path)) from None
    return parse_config(raw, str(path))
