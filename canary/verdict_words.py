"""Verdict evidence in plain words: the effect and its interval first, then how far the
evidence has come toward each decision.

This is the one place that knows the names of the judges' detail fields
(`MetricResult.statistics`); every reader of a verdict — the demo's live table,
`canary status`, `show`, `history`, the report pages and webhook messages — goes
through `describe_metric` / `describe_judgement`. Raw e-values stay in `--json` and the
report's detail table (`raw_evidence`). Fields are read defensively: a judge may add
fields, and one missing or of another type leaves its phrase out.

Progress toward a decision of the sequential judge is the share of the way, on the log
scale, from no evidence (e-value 1) to the decision threshold T:
``progress = clamp(log(e) / log(T), 0, 1)``; 100% means the threshold is reached. The
e-value is a test martingale, so the share can fall as well as rise (Ramdas et al.,
"Game-theoretic statistics and safe anytime-valid inference", Statist. Sci. 38, 2023).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MetricWords",
    "deciding_effects",
    "describe_judgement",
    "describe_metric",
    "progress_share",
    "raw_evidence",
    "round_progress",
]

#: Judge reasons that the plain words replace (they repeat an interval or an e-value).
_REPLACED_REASONS = (
    "fail evidence",
    "canary error odds ",
    "odds of slower than ",
    "robust evidence off",
)
_REPLACED_PARTS = (": canary - baseline shift in [",)
#: A number in scientific notation (an e-value): such reasons stay in --json only.
_SCIENTIFIC = re.compile(r"(?<![\w.-])\d+(\.\d+)?e[+-]\d+")


@dataclass(frozen=True)
class MetricWords:
    """One metric's verdict for people: effect first, then progress, then notes."""

    metric: str
    verdict: str
    effect: str | None = None
    progress: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """Effect and progress on one line: ``error odds 4.5–6.3x baseline · FAIL ...``."""
        parts = [p for p in (self.effect, *self.progress) if p]
        return " · ".join(parts) if parts else self.verdict

    def lines(self) -> list[str]:
        """Two lines for narrow tables: metric, verdict and effect; then the progress."""
        head = f"{self.metric}: {self.verdict}" + (f" — {self.effect}" if self.effect else "")
        return [head, *(["  " + " · ".join(self.progress)] if self.progress else [])]

    def line(self) -> str:
        """``errors: fail — error odds 4.5–6.3x baseline · FAIL evidence 100% — decided``."""
        return f"{self.metric}: {self.verdict} — {self.summary}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _ratio(value: float) -> str:
    if value < 1:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def ratio_interval(low: Any, high: Any) -> str | None:
    """``4.5–6.3x``; past the ends of the judge's grid (0.1 to 10), ``at least 8.9x`` or
    ``at most 0.12x``; both ends open is "anywhere (no estimate yet)"."""
    lo, hi = _number(low), _number(high)
    if lo is None:
        return None
    if lo == 0.0 and hi is None:
        return None if high is not None else "anywhere (no estimate yet)"
    if hi is None:
        return f"at least {_ratio(lo)}x"
    if lo == 0.0:
        return f"at most {_ratio(hi)}x"
    if _ratio(lo) == _ratio(hi):
        return f"{_ratio(lo)}x"
    return f"{_ratio(lo)}–{_ratio(hi)}x"


def progress_share(e_value: Any, threshold: Any) -> float | None:
    """``clamp(log(e) / log(T), 0, 1)``: how far an e-value is toward its threshold."""
    e, t = _number(e_value), _number(threshold)
    if e is None or t is None or t <= 1.0:
        if e is not None and e == math.inf:
            return 1.0
        return None
    if e <= 1.0:
        return 0.0
    return min(1.0, math.log(e) / math.log(t))


def round_progress(
    evidence: Mapping[str, Any] | None, statistics: Mapping[str, Any] | None
) -> tuple[float | None, float | None]:
    """(FAIL, PASS) progress shares after one stored round: its evidence entry holds the
    natural-log e-values, its statistics the thresholds. None where the judge has none."""
    entry = evidence if isinstance(evidence, Mapping) else {}
    stats = statistics if isinstance(statistics, Mapping) else {}
    shares: list[float | None] = []
    for log_key, t_key in (("log_e_fail", "fail_threshold"), ("log_e_pass", "pass_threshold")):
        log_e, t = _number(entry.get(log_key)), _number(stats.get(t_key))
        if log_e is None or t is None or t <= 1.0:
            shares.append(None)
        else:
            shares.append(min(1.0, max(0.0, log_e / math.log(t))))
    return shares[0], shares[1]


def _percent(share: float) -> str:
    return f"{math.floor(share * 100):.0f}%" if share < 1.0 else "100%"


def _estimate(value: Any) -> str:
    """`` (estimate 5.2x)``: the sequential judge's conditional MLE, once a verdict fixed it."""
    if value == "inf":
        return " (estimate: unbounded)"
    number = _number(value)
    return "" if number is None else f" (estimate {_ratio(number)}x)"


def _sequential(stats: Mapping[str, Any], verdict: str) -> tuple[str | None, list[str]]:
    effect = None
    if "per_bound" in stats:
        # the bound with the strongest sign of a slowdown (largest low end), else the tail
        bounds = [
            item
            for item in stats.get("per_bound") or []
            if isinstance(item, Mapping) and _number(item.get("bound")) is not None
        ]
        if bounds:
            item = max(bounds, key=lambda b: (_number(b.get("ci_low")) or 0.0, b["bound"]))
            interval = ratio_interval(item.get("ci_low"), item.get("ci_high"))
            where = f"requests slower than {_number(item['bound']):g} ms"
            effect = (
                f"{where}: odds {interval}" + ("" if "anywhere" in interval else " baseline")
                if interval
                else f"{where}: no constant odds ratio fits (changed between rounds)"
            ) + _estimate(item.get("odds_ratio"))
    elif "ci_low" in stats or "ci_high" in stats:
        interval = ratio_interval(stats.get("ci_low"), stats.get("ci_high"))
        effect = (
            f"error odds {interval}" + ("" if "anywhere" in interval else " baseline")
            if interval
            else "error odds: no constant ratio fits (rates changed between rounds)"
        ) + _estimate(stats.get("odds_ratio"))
    progress: list[tuple[bool, float, str]] = []
    for side, e_key, t_key in (
        ("FAIL", "e_fail", "fail_threshold"),
        ("PASS", "e_pass", "pass_threshold"),
    ):
        share = progress_share(stats.get(e_key), stats.get(t_key))
        if share is None:
            continue
        text = f"{side} evidence {_percent(share)}"
        decided = verdict == side.lower()
        if decided:
            text += " — decided"
        elif share >= 1.0 and side == "PASS":
            requests, needed = _number(stats.get("requests")), _number(stats.get("min_requests"))
            if requests is not None and needed is not None and requests < needed:
                text += f" — waiting for {needed - requests:,.0f} more canary requests"
        progress.append((decided, share, text))
    # the side that decided, or else the one further along, first
    progress.sort(key=lambda item: (not item[0], -item[1]))
    return effect, [text for _, _, text in progress]


def _threshold(stats: Mapping[str, Any], verdict: str) -> tuple[str | None, list[str]]:
    low, high, last = _number(stats.get("min")), _number(stats.get("max")), stats.get("last_value")
    bounds = " and ".join(
        text
        for text in (
            f">= {low:g}" if low is not None else "",
            f"<= {high:g}" if high is not None else "",
        )
        if text
    )
    value = _number(last)
    effect = None
    if last is None and "last_value" in stats:
        effect = f"last round: no data (must be {bounds})"
    elif value is not None:
        effect = f"last round {value:.4g} (must be {bounds})"
    progress = []
    limit = _number(stats.get("failure_limit"))
    count = _number(stats.get("failed_in_a_row" if stats.get("consecutive") else "failed"))
    if limit is not None and count is not None:
        needed = limit + 1
        kind = " in a row" if stats.get("consecutive") else ""
        share = _percent(min(1.0, count / needed))
        text = f"FAIL evidence {share} ({count:.0f} of {needed:.0f} failed rounds{kind})"
        if verdict == "fail":
            text += " — decided"
        progress.append(text)
    return effect, progress


def _mann_whitney(stats: Mapping[str, Any], verdict: str) -> tuple[str | None, list[str]]:
    what = (
        stats.get("per_round_value") if isinstance(stats.get("per_round_value"), str) else "value"
    )
    effect = None
    interval = stats.get("interval")
    if isinstance(interval, Sequence) and not isinstance(interval, str) and len(interval) == 2:
        lo, hi = _number(interval[0]), _number(interval[1])
        if lo is not None and hi is not None:
            effect = f"{what}: canary − baseline {lo:+.3g} to {hi:+.3g}"
            bounds = stats.get("bounds")
            if isinstance(bounds, Sequence) and not isinstance(bounds, str) and len(bounds) == 2:
                b_lo, b_hi = _number(bounds[0]), _number(bounds[1])
                if b_lo is not None and b_hi is not None:
                    effect += f" (allowed {b_lo:+.3g} to {b_hi:+.3g})"
    ratio = _number(stats.get("mean_ratio"))
    if ratio is not None:
        effect = (
            f"{effect}, mean {ratio:.2f}x baseline"
            if effect
            else f"{what} mean {ratio:.2f}x baseline"
        )
    progress = []
    classification = stats.get("classification")
    if isinstance(classification, str):
        progress.append(
            f"classified {classification}" + (" — decided" if verdict in ("pass", "fail") else "")
        )
    return effect, progress


def describe_metric(
    metric: str, verdict: str, statistics: Mapping[str, Any] | None, reasons: Iterable[str] = ()
) -> MetricWords:
    """Plain words for one metric result (stored or fresh), whatever judge made it."""
    stats = statistics if isinstance(statistics, Mapping) else {}
    verdict = str(verdict)
    if "fail_threshold" in stats or "e_fail" in stats:
        effect, progress = _sequential(stats, verdict)
    elif "failure_limit" in stats:
        effect, progress = _threshold(stats, verdict)
    elif "classification" in stats:
        effect, progress = _mann_whitney(stats, verdict)
    else:
        effect, progress = None, []
    notes = [
        r
        for r in reasons
        if isinstance(r, str)
        and not r.startswith(_REPLACED_REASONS)
        and not any(part in r for part in _REPLACED_PARTS)
        and not _SCIENTIFIC.search(r)
    ]
    if "fail_threshold" in stats or "e_fail" in stats:
        notes = _robust_notes(stats) + notes
    return MetricWords(metric, verdict, effect, progress, notes)


def _robust_notes(stats: Mapping[str, Any]) -> list[str]:
    """The sequential judge's two kinds of FAIL evidence, as shares of the threshold."""
    if stats.get("robust") is False:
        return ["robust evidence off: FAIL assumes independent requests"]
    requests = progress_share(stats.get("e_fail_requests"), stats.get("fail_threshold"))
    robust = progress_share(stats.get("e_fail_robust"), stats.get("fail_threshold"))
    if requests is None or robust is None:
        return []
    note = (
        f"FAIL needs request-level ({_percent(requests)}) and robust ({_percent(robust)}) evidence"
    )
    items = stats.get("per_bound") if isinstance(stats.get("per_bound"), list) else [stats]
    spreads = [
        (_number(item.get("round_cv")), _number(item.get("pod_cv")))
        for item in items
        if isinstance(item, Mapping)
    ]
    rounds = [r for r, _ in spreads if r is not None]
    pods = [p for _, p in spreads if p is not None]
    if rounds and pods:
        note += (
            f"; the robust one allows the baseline's spread of {max(rounds):.0%} between "
            f"rounds and {max(pods):.0%} between pods"
        )
    return [note]


def describe_result(result: Any) -> MetricWords:
    """`describe_metric` of a `MetricResult`, a stored result row or a `show` dict."""
    if isinstance(result, Mapping):
        return describe_metric(
            str(result.get("metric") or result.get("name") or "?"),
            str(result.get("verdict", "")),
            result.get("statistics"),
            result.get("reasons") or (),
        )
    name = getattr(result, "name", None) or getattr(result, "metric", "?")
    return describe_metric(
        str(name),
        str(getattr(result, "verdict", "")),
        getattr(result, "statistics", None),
        getattr(result, "reasons", None) or (),
    )


def describe_judgement(judgement: Any) -> list[MetricWords]:
    """One `MetricWords` per metric of a `Judgement` (or a mapping name -> result)."""
    metrics = getattr(judgement, "metrics", judgement) or {}
    return [describe_result(result) for result in metrics.values()]


def deciding_effects(verdict: str, results: Iterable[Any]) -> str:
    """``errors: error odds 5.0–6.3x baseline`` for the results carrying a PASS or FAIL
    `verdict` (joined by "; "), or "" when none states an effect."""
    if verdict not in ("pass", "fail"):
        return ""
    words = [describe_result(r) for r in results]
    return "; ".join(f"{w.metric}: {w.effect}" for w in words if w.verdict == verdict and w.effect)


def raw_evidence(statistics: Mapping[str, Any] | None) -> str:
    """The raw numbers for the detail table: ``e_fail 2.3e+204 / 200, e_pass 0.0015 / 20``."""
    stats = statistics if isinstance(statistics, Mapping) else {}
    parts = []
    for e_key, t_key in (("e_fail", "fail_threshold"), ("e_pass", "pass_threshold")):
        e, t = _number(stats.get(e_key)), _number(stats.get(t_key))
        if e is not None:
            parts.append(f"{e_key} {e:.3g}" + (f" / {t:.3g}" if t is not None else ""))
    for key in ("score", "group_score", "p_value", "effect_size"):
        value = _number(stats.get(key))
        if value is not None:
            parts.append(f"{key} {value:.3g}")
    return ", ".join(parts)
