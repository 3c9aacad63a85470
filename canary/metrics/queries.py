"""PromQL templates: loading (shipped package + a user directory) and safe rendering.

A template is a ``NAME.promql`` file; lines starting with ``#`` are comments and are
dropped. Placeholders use ``${name}`` (``$$`` is a literal ``$``):

- ``${selector}``      the arm's full matcher list without braces: reporter, namespace
                       and the arm's ``match`` / ``match_regex`` matchers
- ``${arm_selector}``  only the arm's matchers
- ``${namespace}``, ``${reporter}``, ``${failure_codes}``  PromQL string literals
                       (quotes included), e.g. ``"shop"``
- ``${window}``        a PromQL duration, e.g. ``60s``
- ``${pod_label}``     the label naming the pod (a validated label name, bare)
- ``${series_labels}`` the labels that identify one counter series besides the code
                       or ``le``: ``${pod_label}`` in sidecar mode; in ambient mode
                       (``reporter = "waypoint"``) the waypoint pod plus destination
                       workload and revision (see `canary.metrics.series_keys`)

Every value that comes from configuration or requests enters the query only as an
escaped PromQL string literal; label names are checked against the Prometheus
grammar and rejected otherwise. The shipped templates live in `canary.queries`
(``queries/`` in the repository); files in `PrometheusConfig.templates_dir` are
added to them and take precedence over shipped ones with the same name.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from canary.config import LABEL_NAME, ArmConfig, MetricBase
from canary.errors import TemplateError
from canary.model import MetricKind

__all__ = [
    "DEFAULT_TEMPLATES",
    "NAMESPACE_LABEL",
    "QueryContext",
    "TemplateSet",
    "arm_matchers",
    "check_label_name",
    "format_duration",
    "load_templates",
    "promql_string",
    "regex_literal",
    "template_for",
]

#: The template used for a metric kind when `MetricBase.query` is not set.
DEFAULT_TEMPLATES: Mapping[MetricKind, str] = {
    MetricKind.COUNTS: "istio-requests",
    MetricKind.HISTOGRAM: "istio-latency",
}

#: The Istio label that scopes an arm to the canary's namespace.
NAMESPACE_LABEL = "destination_workload_namespace"

_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_VARIABLES = frozenset(
    {
        "selector",
        "arm_selector",
        "namespace",
        "reporter",
        "failure_codes",
        "window",
        "pod_label",
        "series_labels",
    }
)
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def promql_string(value: str) -> str:
    """`value` as a double-quoted PromQL string literal that means exactly `value`.

    Backslash and double quote are escaped; control characters become ``\\xHH``
    (Go string-literal escapes, which the PromQL lexer uses), so no value can end
    the literal or the selector early.
    """
    out = ['"']
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def regex_literal(value: str) -> str:
    """`value` escaped for RE2 so that a regex matcher matches it literally."""
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in value)


def check_label_name(name: str, where: str = "label") -> str:
    """Return `name` if it is a valid Prometheus label name, else raise TemplateError."""
    if not isinstance(name, str) or not LABEL_NAME.match(name):
        raise TemplateError(f"{where}: invalid Prometheus label name {name!r}")
    return name


def format_duration(seconds: float) -> str:
    """A PromQL duration for `seconds` (``60s``, ``1500ms``); must be positive."""
    if not seconds > 0:
        raise TemplateError(f"a query window must be positive, got {seconds!r} s")
    milliseconds = round(seconds * 1000)
    if milliseconds % 1000 == 0:
        return f"{milliseconds // 1000}s"
    return f"{max(milliseconds, 1)}ms"


def arm_matchers(
    match: Mapping[str, str],
    match_regex: Mapping[str, str] | None = None,
    *,
    where: str = "arm",
) -> list[str]:
    """PromQL matchers (``name="value"``, ``name=~"regex"``) with names checked."""
    matchers = []
    for name, value in match.items():
        matchers.append(f"{check_label_name(name, where)}={promql_string(str(value))}")
    for name, value in (match_regex or {}).items():
        matchers.append(f"{check_label_name(name, where)}=~{promql_string(str(value))}")
    return matchers


@dataclass(frozen=True, slots=True)
class QueryContext:
    """What a template is rendered with for one arm."""

    namespace: str
    arm: ArmConfig
    reporter: str = "destination"
    pod_label: str = "pod"
    window_seconds: float = 60.0
    failure_codes: str = "5.."
    extra_match: Mapping[str, str] | None = None
    extra_match_regex: Mapping[str, str] | None = None
    series_labels: tuple[str, ...] = ()  # default: (pod_label,)

    def variables(self, where: str = "arm") -> dict[str, str]:
        arm = arm_matchers(self.arm.match, self.arm.match_regex, where=where)
        extra = arm_matchers(self.extra_match or {}, self.extra_match_regex, where=where)
        selector = [
            f"reporter={promql_string(self.reporter)}",
            f"{NAMESPACE_LABEL}={promql_string(self.namespace)}",
            *arm,
            *extra,
        ]
        return {
            "selector": ", ".join(selector),
            "arm_selector": ", ".join([*arm, *extra]),
            "namespace": promql_string(self.namespace),
            "reporter": promql_string(self.reporter),
            "failure_codes": promql_string(self.failure_codes),
            "window": format_duration(self.window_seconds),
            "pod_label": check_label_name(self.pod_label, "pod_label"),
            "series_labels": ", ".join(
                check_label_name(label, "series labels")
                for label in (self.series_labels or (self.pod_label,))
            ),
        }


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    source: str  # where it was read from (for messages)
    text: str  # comments removed

    def render(self, context: QueryContext) -> str:
        """The PromQL query for `context`; unknown placeholders are errors."""
        try:
            return string.Template(self.text).substitute(context.variables(f"template {self.name}"))
        except KeyError as exc:
            raise TemplateError(
                f"template {self.name!r} ({self.source}) uses unknown variable ${{{exc.args[0]}}}; "
                f"known: {', '.join(sorted(_VARIABLES))}"
            ) from None
        except ValueError as exc:
            raise TemplateError(f"template {self.name!r} ({self.source}): {exc}") from None


class TemplateSet:
    """Templates by name: shipped ones overlaid by a user directory's."""

    def __init__(self, templates: Mapping[str, Template]) -> None:
        self._templates = dict(templates)

    def names(self) -> list[str]:
        return sorted(self._templates)

    def get(self, name: str) -> Template:
        try:
            return self._templates[name]
        except KeyError:
            raise TemplateError(
                f"no query template named {name!r} (known: {', '.join(self.names())})"
            ) from None

    def render(self, name: str, context: QueryContext) -> str:
        return self.get(name).render(context)


def _parse(name: str, source: str, raw: str) -> Template:
    lines = [line for line in raw.splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines).strip()
    if not text:
        raise TemplateError(f"template {name!r} ({source}) is empty")
    for match in string.Template.pattern.finditer(text):
        variable = match.group("named") or match.group("braced")
        if match.group("invalid") is not None:
            raise TemplateError(f"template {name!r} ({source}): a lone '$'; write $$ for '$'")
        if variable and variable not in _VARIABLES:
            raise TemplateError(
                f"template {name!r} ({source}) uses unknown variable ${{{variable}}}; "
                f"known: {', '.join(sorted(_VARIABLES))}"
            )
    return Template(name=name, source=source, text=text)


def _shipped() -> dict[str, Template]:
    templates = {}
    for entry in importlib.resources.files("canary.queries").iterdir():
        if entry.name.endswith(".promql"):
            name = entry.name.removesuffix(".promql")
            templates[name] = _parse(name, f"canary.queries/{entry.name}", entry.read_text())
    return templates


@functools.lru_cache(maxsize=16)
def load_templates(templates_dir: str | None = None) -> TemplateSet:
    """The shipped templates plus ``*.promql`` files in `templates_dir` (cached)."""
    templates = _shipped()
    if templates_dir:
        directory = Path(templates_dir)
        if not directory.is_dir():
            raise TemplateError(f"prometheus.templates_dir: {templates_dir} is not a directory")
        for path in sorted(directory.glob("*.promql")):
            name = path.name.removesuffix(".promql")
            if not _TEMPLATE_NAME.match(name):
                raise TemplateError(f"{path}: invalid template name {name!r}")
            try:
                raw = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"{path}: cannot read template: {exc}") from exc
            templates[name] = _parse(name, str(path), raw)
    return TemplateSet(templates)


def template_for(metric: MetricBase) -> str:
    """The template name a metric uses: its `query`, or the default for its kind."""
    if metric.query:
        return metric.query
    try:
        return DEFAULT_TEMPLATES[metric.kind]
    except KeyError:
        raise TemplateError(
            f"metric {metric.name!r}: kind {metric.kind.value!r} needs `query` "
            "(a template name such as success-rate, latency-avg, latency-p99)"
        ) from None
