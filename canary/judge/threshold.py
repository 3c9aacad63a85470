"""The `threshold` judge: absolute bounds on a per-round value, Argo / Flagger style.

Each round is one *measurement* per metric: the canary's per-round value (the
baseline is not used) — the observation itself for ``value`` metrics, the success
rate 1 - failed/total for ``counts`` metrics, and for ``histogram`` metrics the mean
estimated from the buckets or, when `quantiles` lists one quantile (e.g. [0.99]), that
quantile interpolated as Prometheus's ``histogram_quantile`` does (see
`canary.judge.round_values`). The measurement is *successful* when
``min <= value <= max`` (either bound may be omitted, not both), *failed* otherwise.

A round without a value is handled by `no_data`: ``"inconclusive"`` (default: the
measurement counts neither way and does not break a run of failures), ``"fail"`` (a
failed measurement — Flagger's behaviour) or ``"pass"``. A round whose queries failed
(`error` set) is no measurement at all.

Failure limit (`failure_limit`, default 0 — the number of failed measurements
tolerated):

- cumulative (`consecutive = false`, default), Argo Rollouts' ``failureLimit``: the
  metric FAILs when the failed measurements so far exceed the limit;
- consecutive (`consecutive = true`): the metric FAILs when more than `failure_limit`
  measurements *in a row* failed; a successful measurement resets the run. (Flagger's
  ``threshold: N`` rolls back when its N-th failed check is counted: failure_limit
  N - 1.)

FAIL is final. PASS only at the budget (``final=True``) for a metric that never failed
and had at least one successful measurement; before that it is RUNNING, and a metric
that had no successful measurement at all is INCONCLUSIVE at the budget — missing
data is never a pass. The analysis verdict combines the metrics with
`canary.judge.combine.combine` (any FAIL fails; PASS when all pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from canary.config import AnalysisSettings, ThresholdMetric
from canary.judge.combine import combine
from canary.judge.round_values import histogram_quantile_of, round_value, value_description
from canary.judge.states import (
    Measurement,
    Outcome,
    ThresholdMetricState,
    ThresholdState,
    check_metrics,
)
from canary.model import Judgement, MetricKind, MetricResult, RoundData, Verdict

__all__ = ["ThresholdJudge"]

NoData = Literal["inconclusive", "fail", "pass"]

#: The outcome of a round without a value, per `no_data`.
_NO_DATA_OUTCOME: dict[NoData, Outcome] = {
    "inconclusive": "no_data",
    "fail": "failed",
    "pass": "successful",
}


@dataclass(frozen=True, slots=True)
class _Spec:
    config: ThresholdMetric
    min: float | None
    max: float | None
    failure_limit: int
    consecutive: bool
    no_data: NoData
    quantile: float | None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class ThresholdJudge:
    """Argo / Flagger style threshold checks (see the module docstring)."""

    name = "threshold"

    def __init__(self, metrics: Sequence[ThresholdMetric], settings: AnalysisSettings) -> None:
        if not metrics:
            raise ValueError("the threshold judge needs at least one metric")
        self.settings = settings
        self.specs = [self._spec(m) for m in metrics]

    @staticmethod
    def _spec(metric: ThresholdMetric) -> _Spec:
        if metric.min is None and metric.max is None:
            raise ValueError(
                f"metric {metric.name!r}: the threshold judge needs `min`, `max` or both"
            )
        if metric.min is not None and metric.max is not None and metric.min > metric.max:
            raise ValueError(
                f"metric {metric.name!r}: min ({metric.min:g}) is greater than max ({metric.max:g})"
            )
        quantile = histogram_quantile_of(metric) if metric.kind is MetricKind.HISTOGRAM else None
        return _Spec(
            config=metric,
            min=metric.min,
            max=metric.max,
            failure_limit=metric.failure_limit or 0,
            consecutive=bool(metric.consecutive),
            no_data=metric.no_data or "inconclusive",
            quantile=quantile,
        )

    def initial_state(self) -> ThresholdState:
        return ThresholdState.initial(s.config.name for s in self.specs)

    def for_rounds(self, rounds: Sequence[RoundData]) -> ThresholdJudge:
        """This judge: nothing of a round is computed ahead of its turn."""
        return self

    def read_state(self, data: Mapping[str, Any]) -> ThresholdState:
        state = ThresholdState.from_json(data)
        check_metrics(state.metrics, (s.config.name for s in self.specs), "metrics")
        return state

    def update(
        self, state: ThresholdState, round: RoundData, *, final: bool = False
    ) -> tuple[ThresholdState, Judgement]:
        k = state.round + 1
        new_metrics = dict(state.metrics)
        results: dict[str, MetricResult] = {}
        for spec in self.specs:
            name = spec.config.name
            current = state.metrics[name]
            if round.error:
                skipped = Measurement(round=k, skipped=round.error)
                current = current.add(
                    skipped,
                    successful=current.successful,
                    failed=current.failed,
                    inconclusive=current.inconclusive,
                    run=current.run,
                    failed_round=current.failed_round,
                )
            else:
                current = self._measure(spec, current, round, k)
            new_metrics[name] = current
            results[name] = self._result(spec, current, final, k)
        new_state = ThresholdState(round=k, metrics=new_metrics)
        return new_state, combine(results, final=final, round=k)

    # ------------------------------------------------------------------ helpers

    def _bounds_text(self, spec: _Spec) -> str:
        if spec.min is not None and spec.max is not None:
            return f"[{_fmt(spec.min)}, {_fmt(spec.max)}]"
        if spec.min is not None:
            return f">= {_fmt(spec.min)}"
        assert spec.max is not None
        return f"<= {_fmt(spec.max)}"

    def _measure(
        self, spec: _Spec, current: ThresholdMetricState, round: RoundData, k: int
    ) -> ThresholdMetricState:
        """The metric after round k's measurement."""
        value = round_value(
            round.canary.get(spec.config.name),
            spec.config,
            counts_as="success_rate",
            quantile=spec.quantile,
            where=f"round {k}, canary",
        )
        outcome: Outcome
        if not math.isfinite(value):
            outcome = _NO_DATA_OUTCOME[spec.no_data]
            entry = Measurement(round=k, value=None, outcome=outcome)
        else:
            ok = (spec.min is None or value >= spec.min) and (spec.max is None or value <= spec.max)
            outcome = "successful" if ok else "failed"
            entry = Measurement(round=k, value=value, outcome=outcome)
        successful, failed, inconclusive, run = (
            current.successful,
            current.failed,
            current.inconclusive,
            current.run,
        )
        if outcome == "failed":
            failed, run = failed + 1, run + 1
        elif outcome == "successful":
            successful, run = successful + 1, 0
        else:
            inconclusive += 1
        failed_round = current.failed_round
        count = run if spec.consecutive else failed
        if failed_round is None and count > spec.failure_limit:
            failed_round = k
        return current.add(
            entry,
            successful=successful,
            failed=failed,
            inconclusive=inconclusive,
            run=run,
            failed_round=failed_round,
        )

    def _result(
        self, spec: _Spec, current: ThresholdMetricState, final: bool, k: int
    ) -> MetricResult:
        kind = "in a row" if spec.consecutive else "in total"
        last = next((e for e in reversed(current.evidence) if e.skipped is None), None)
        statistics = {
            "min": spec.min,
            "max": spec.max,
            "failure_limit": spec.failure_limit,
            "consecutive": spec.consecutive,
            "no_data": spec.no_data,
            "successful": current.successful,
            "failed": current.failed,
            "inconclusive": current.inconclusive,
            "failed_in_a_row": current.run,
            "last_value": None if last is None else last.value,
            "per_round_value": value_description(
                spec.config.kind, counts_as="success_rate", quantile=spec.quantile
            ),
        }
        limit = f"{current.failed} failed in total, {current.run} in a row; limit "
        limit += f"{spec.failure_limit} {kind}"
        reasons = []
        if last is not None:
            shown = "no data" if last.value is None else _fmt(last.value)
            reasons.append(f"last value {shown} (must be {self._bounds_text(spec)})")
        reasons.append(limit)
        if current.failed_round is not None:
            verdict, verdict_round = Verdict.FAIL, current.failed_round
            reasons.insert(0, f"failure limit exceeded at round {verdict_round}")
        elif not final:
            verdict, verdict_round = Verdict.RUNNING, None
        elif current.successful > 0:
            verdict, verdict_round = Verdict.PASS, k
        else:
            verdict, verdict_round = Verdict.INCONCLUSIVE, k
            reasons.insert(0, "no successful measurement before the budget")
        return MetricResult(
            name=spec.config.name,
            verdict=verdict,
            round=verdict_round,
            reasons=reasons,
            statistics=statistics,
            evidence=list(current.stored_evidence),
        )
