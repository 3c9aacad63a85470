"""`--set` overrides of analysis and metric settings (`canary judge`, `canary replay`).

Grammar: an analysis setting (``max_rounds=30``, ``promotion=no-failure``), a metric
setting for every metric (``alpha_fail=0.001``) or for one metric
(``errors.margin=2``); values are JSON (``fail_grid=[1.5,2,4]``) or plain strings.
Precedence: ``KEY`` < ``METRIC.KEY``. Bad input is a UsageError naming the item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from canary.config import METRIC_TYPES, AnalysisSettings, metric_config, validation_problems
from canary.errors import UsageError

__all__ = [
    "METRIC_KEYS",
    "SETTING_KEYS",
    "apply_overrides",
    "parse_overrides",
    "validate_settings",
    "validation_message",
]

#: Analysis settings `--set` may change (steps and metrics come from the input).
SETTING_KEYS = frozenset(AnalysisSettings.model_fields) - {"metrics", "steps", "judge"}
#: Metric settings `--set` may change, for every metric or as `metric.key` (the keys of
#: every judge's metrics; the analysis's judge refuses those of another judge).
METRIC_KEYS = frozenset().union(*(m.model_fields for m in METRIC_TYPES.values())) - {
    "name",
    "kind",
    "judge",
}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(
    items: Sequence[str],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """`--set` items -> (analysis settings, every-metric settings, per-metric settings)."""
    settings: dict[str, Any] = {}
    every: dict[str, Any] = {}
    per_metric: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. alpha_fail=0.001")
        value = _value(raw.strip())
        if "." in key:
            metric, _, field = key.partition(".")
            if field not in METRIC_KEYS:
                raise UsageError(
                    f"--set {key}: unknown metric setting {field!r} "
                    f"(known: {', '.join(sorted(METRIC_KEYS))})"
                )
            per_metric.setdefault(metric, {})[field] = value
        elif key in SETTING_KEYS:
            settings[key] = value
        elif key in METRIC_KEYS:
            every[key] = value
        else:
            hint = " (use --judge)" if key == "judge" else ""
            raise UsageError(f"--set {key}: unknown setting{hint}")
    # Validate the values once, independently of any input.
    try:
        AnalysisSettings.model_validate(settings)
    except ValidationError as exc:
        raise UsageError(validation_message(exc, "--set ")) from None
    for name, fields in [("", every), *per_metric.items()]:
        for judge, keys in _by_judge(fields).items():
            try:
                metric_config(judge, {"name": name or "metric", **keys})
            except ValidationError as exc:
                prefix = f"--set {name}." if name else "--set "
                raise UsageError(validation_message(exc, prefix)) from None
    return settings, every, per_metric


def _by_judge(fields: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`fields` grouped under the first judge whose metrics have each key."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in fields.items():
        judge = next(j for j, model in METRIC_TYPES.items() if key in model.model_fields)
        groups.setdefault(judge, {})[key] = value
    return groups


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """One line naming every problem: ``{prefix}{key path}: {message}; ...``."""
    lines = []
    for path, message in validation_problems(exc):
        head = f"{prefix}{path}".rstrip(". ")
        lines.append(f"{head}: {message}" if head else message)
    return "; ".join(lines)


def apply_overrides(settings: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `--set` overrides to a settings dict; UsageError names a bad one.

    The grammar is `parse_overrides`' (see the module's docstring).
    """
    top, every, per_metric = parse_overrides(overrides)
    data = dict(settings)
    metrics = [dict(m) for m in data.get("metrics", [])]
    names = [m.get("name") for m in metrics]
    for name in per_metric:
        if name not in names:
            known = ", ".join(str(n) for n in names)
            raise UsageError(f"--set {name}.*: no metric named {name!r} (known: {known})")
    for metric in metrics:
        metric.update(every)
        metric.update(per_metric.get(metric.get("name"), {}))
    data.update(top)
    data["metrics"] = metrics
    return data


def validate_settings(data: Mapping[str, Any], where: str) -> AnalysisSettings:
    """AnalysisSettings from a dict; UsageError naming the key path and `where`."""
    try:
        return AnalysisSettings.model_validate(dict(data))
    except ValidationError as exc:
        raise UsageError(f"{where}: {validation_message(exc)}") from None
