"""The `mann_whitney` judge: Kayenta's NetflixACAJudge, re-taken every round.

Each round adds one value per arm to each metric's two samples (see
`canary.judge.round_values`: the value itself, the error ratio failed/total for counts
metrics, the bucket mean — or the one quantile listed in `quantiles` — for histogram
metrics). After every round the judge classifies each metric on all values so far
exactly as Kayenta does (`canary.judge.kayenta`: Mann-Whitney interval at confidence
0.98, tolerance 0.25, effect-size gates, direction, NaN strategy, outliers, critical
and must-have-data metrics) and scores the classifications 0-100 with Kayenta's
weighted group sum (`canary.judge.kayenta_score`, `group_weights` from the settings).

Verdict, round by round — Spinnaker's reading of the two score thresholds (a
"marginal" score fails the canary at once; only the last run can pass it):

- FAIL as soon as a critical metric fails, or the score is below `marginal_score`;
  FAIL is final, later rounds keep it;
- at the budget (``final=True``): PASS when the score is at least `pass_score`,
  otherwise INCONCLUSIVE;
- otherwise RUNNING. There is no PASS before the budget: a fixed-horizon test
  re-taken every round would otherwise pass on an early lucky look.

A metric is classified only once each arm holds `min_samples` values (by default the
smallest equal sample size at which the rank-sum test can reach the confidence level
at all: 5 at 98%); until then it is pending and takes no part in the score. At the
budget an arm without any value is classified (Kayenta's Nodata), while a metric that
still has too few values leaves the analysis INCONCLUSIVE. A round with `error` set
adds no values. Because the test is re-taken every round, its false-alarm rate grows
with the number of rounds — use the `sequential` judge when decisions are taken every
round; this judge exists for Kayenta migrations.

Per-metric verdicts follow the analysis: metrics that caused a FAIL are FAIL, every
metric is PASS or INCONCLUSIVE with the analysis at the budget, RUNNING otherwise;
the Kayenta label (Pass/High/Low/Nodata/NodataFailMetric/Error) is in
``statistics["classification"]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.stats import norm

from canary.config import AnalysisSettings, MannWhitneyMetric
from canary.judge.kayenta import (
    Classification,
    Direction,
    EffectSizeSettings,
    MetricClassification,
    NanStrategy,
    OutlierStrategy,
    classify,
    effect_size_settings,
    prepare,
)
from canary.judge.kayenta_score import ScoredMetric, ScoreResult, score
from canary.judge.round_values import histogram_quantile_of, round_value, value_description
from canary.judge.states import (
    MannWhitneyEvidence,
    MannWhitneyFailure,
    MannWhitneyState,
    Samples,
    check_metrics,
)
from canary.model import Judgement, MetricKind, MetricResult, RoundData, Verdict

__all__ = ["DEFAULT_GROUP", "MannWhitneyJudge", "min_samples_for"]

#: The group of metrics without a `group`.
DEFAULT_GROUP = "default"

_FAILING = (Classification.HIGH, Classification.LOW, Classification.NODATA_FAIL_METRIC)


def min_samples_for(confidence: float) -> int:
    """Smallest n such that n vs n values can reach `confidence` (two-sided).

    With complete separation and no ties the continuity-corrected statistic is
    (n^2/2 - 1/2) / sqrt(n^2 (2n + 1) / 12); below this n the interval always spans
    the whole data range (R: "requested conf.level not achievable").
    """
    z = float(norm.isf((1.0 - confidence) / 2.0))
    n = 1
    while (n * n / 2.0 - 0.5) / math.sqrt(n * n * (2 * n + 1) / 12.0) < z:
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class _Spec:
    config: MannWhitneyMetric
    direction: Direction
    nan_strategy: NanStrategy
    outliers: OutlierStrategy
    critical: bool
    must_have_data: bool
    effect: EffectSizeSettings
    group: str
    quantile: float | None


def _clean(value: float) -> float | None:
    """JSON-safe number: NaN and infinities become None."""
    return float(value) if math.isfinite(value) else None


class MannWhitneyJudge:
    """Kayenta-compatible judge (see the module docstring)."""

    name = "mann_whitney"

    def __init__(
        self,
        metrics: Sequence[MannWhitneyMetric],
        settings: AnalysisSettings,
        *,
        confidence: float = 0.98,
        tolerance: float = 0.25,
        min_samples: int | None = None,
        outlier_factor: float = 3.0,
    ) -> None:
        if not metrics:
            raise ValueError("the mann_whitney judge needs at least one metric")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        if settings.marginal_score > settings.pass_score:
            raise ValueError(
                f"marginal_score ({settings.marginal_score:g}) must not exceed "
                f"pass_score ({settings.pass_score:g})"
            )
        self.settings = settings
        self.confidence = confidence
        self.tolerance = tolerance
        self.outlier_factor = outlier_factor
        self.min_samples = min_samples_for(confidence) if min_samples is None else min_samples
        self.specs = [self._spec(m) for m in metrics]
        groups = {s.group for s in self.specs}
        weights = dict(settings.group_weights)
        if unknown := sorted(set(weights) - groups):
            raise ValueError(
                f"group_weights names group(s) no metric belongs to: {', '.join(unknown)} "
                f"(groups: {', '.join(sorted(groups))})"
            )
        if sum(weights.values()) > 100.0 + 1e-9:
            raise ValueError(f"group_weights add up to {sum(weights.values()):g}, more than 100")
        self.group_weights = weights

    @staticmethod
    def _spec(metric: MannWhitneyMetric) -> _Spec:
        default_direction: Direction = "either" if metric.kind is MetricKind.VALUE else "increase"
        quantile = histogram_quantile_of(metric) if metric.kind is MetricKind.HISTOGRAM else None
        return _Spec(
            config=metric,
            direction=metric.direction or default_direction,
            nan_strategy=metric.nan_strategy or "remove",
            outliers=metric.outlier_strategy or "keep",
            critical=bool(metric.critical),
            must_have_data=bool(metric.must_have_data),
            effect=effect_size_settings(metric.effect_size, metric=metric.name),
            group=metric.group or DEFAULT_GROUP,
            quantile=quantile,
        )

    # ------------------------------------------------------------------ protocol

    def initial_state(self) -> MannWhitneyState:
        return MannWhitneyState.initial(s.config.name for s in self.specs)

    def for_rounds(self, rounds: Sequence[RoundData]) -> MannWhitneyJudge:
        """This judge: nothing of a round is computed ahead of its turn."""
        return self

    def read_state(self, data: Mapping[str, Any]) -> MannWhitneyState:
        state = MannWhitneyState.from_json(data)
        names = [s.config.name for s in self.specs]
        check_metrics(state.values, names, "values")
        check_metrics(state.evidence, names, "evidence")
        return state

    def update(
        self, state: MannWhitneyState, round: RoundData, *, final: bool = False
    ) -> tuple[MannWhitneyState, Judgement]:
        k = state.round + 1
        values = dict(state.values)
        measured: dict[str, tuple[float | None, float | None]] = {}
        for spec in self.specs:
            if round.error:
                continue
            name = spec.config.name
            canary_value, baseline_value = (
                _clean(
                    round_value(
                        observations.get(name),
                        spec.config,
                        counts_as="error_ratio",
                        quantile=spec.quantile,
                        where=f"round {k}, {arm}",
                    )
                )
                for arm, observations in (("canary", round.canary), ("baseline", round.baseline))
            )
            measured[name] = (canary_value, baseline_value)
            samples = values[name]
            values[name] = Samples(
                canary=(*samples.canary, canary_value), baseline=(*samples.baseline, baseline_value)
            )

        classified: dict[str, MetricClassification] = {}
        pending: dict[str, tuple[int, int]] = {}
        for spec in self.specs:
            name = spec.config.name
            canary = prepare(
                values[name].canary, spec.nan_strategy, spec.outliers, self.outlier_factor
            )
            baseline = prepare(
                values[name].baseline, spec.nan_strategy, spec.outliers, self.outlier_factor
            )
            smallest = min(canary.size, baseline.size)
            # Too few values: pending (at the budget too, unless an arm has none at all,
            # which is Kayenta's Nodata).
            if smallest < self.min_samples and not (final and smallest == 0):
                pending[name] = (int(canary.size), int(baseline.size))
                continue
            classified[name] = classify(
                baseline,
                canary,
                name=name,
                direction=spec.direction,
                nan_strategy=spec.nan_strategy,
                critical=spec.critical,
                must_have_data=spec.must_have_data,
                tolerance=self.tolerance,
                confidence=self.confidence,
                effect=spec.effect,
            )
        evidence = dict(state.evidence)
        for spec in self.specs:
            name = spec.config.name
            entry = self._evidence(k, round.error, measured.get(name), classified.get(name))
            evidence[name] = (*evidence[name], entry)

        groups = {s.config.name: s.group for s in self.specs}
        scored = (
            score(
                [
                    ScoredMetric(n, c.classification, groups[n], c.critical, c.reason)
                    for n, c in classified.items()
                ],
                self.group_weights,
            )
            if classified
            else None
        )

        failed = state.failed
        if failed is None and scored is not None:
            failing = self._failing(scored, classified)
            if failing is not None:
                failed = MannWhitneyFailure(k, tuple(failing[0]), tuple(failing[1]))

        if failed is not None:
            verdict, verdict_round = Verdict.FAIL, failed.round
            reasons = list(failed.reasons)
        elif final:
            if pending or scored is None:
                verdict = Verdict.INCONCLUSIVE
                reasons = [
                    f"budget reached before {', '.join(sorted(pending))} had "
                    f"{self.min_samples} values per arm"
                ]
            elif scored.score >= self.settings.pass_score:
                verdict = Verdict.PASS
                reasons = [f"score {scored.score:g} >= pass_score {self.settings.pass_score:g}"]
            else:
                verdict = Verdict.INCONCLUSIVE
                reasons = [
                    f"budget reached with score {scored.score:g}: below pass_score "
                    f"{self.settings.pass_score:g}, not below marginal_score "
                    f"{self.settings.marginal_score:g}"
                ]
            verdict_round = k
        else:
            verdict, verdict_round = Verdict.RUNNING, None
            if scored is None:
                reasons = [f"collecting: each metric needs {self.min_samples} values per arm"]
            else:
                reasons = [
                    f"score {scored.score:g} (fails below {self.settings.marginal_score:g}; "
                    f"passes at the budget from {self.settings.pass_score:g})"
                ]
        if scored is not None and scored.group_scores:
            groups_text = ", ".join(f"{g} {s:.4g}" for g, s in sorted(scored.group_scores.items()))
            reasons.append(f"group scores: {groups_text}")
        if pending:
            reasons.append("pending: " + ", ".join(sorted(pending)))

        failed_names = set(failed.metrics) if failed else set()
        results = {
            spec.config.name: self._metric_result(
                spec,
                verdict,
                verdict_round,
                failed_names,
                classified.get(spec.config.name),
                pending.get(spec.config.name),
                scored,
                evidence[spec.config.name],
            )
            for spec in self.specs
        }
        new_state = MannWhitneyState(round=k, values=values, evidence=evidence, failed=failed)
        judgement = Judgement(
            verdict=verdict,
            round=verdict_round,
            metrics=results,
            reasons=reasons,
            score=None if scored is None else scored.score,
        )
        return new_state, judgement

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _evidence(
        k: int,
        error: str | None,
        measured: tuple[float | None, float | None] | None,
        classified: MetricClassification | None,
    ) -> MannWhitneyEvidence:
        """Round k's evidence of one metric: its values and classification, or skipped."""
        if error or measured is None:
            return MannWhitneyEvidence(round=k, skipped=error or "no values")
        return MannWhitneyEvidence(
            round=k,
            canary=measured[0],
            baseline=measured[1],
            classification=None if classified is None else classified.classification.value,
        )

    def _failing(
        self, scored: ScoreResult, classified: Mapping[str, MetricClassification]
    ) -> tuple[list[str], list[str]] | None:
        """(metrics, reasons) when this round fails the analysis, else None."""
        if scored.critical_failures:
            return list(scored.critical_failures), [scored.reason or "critical metric failed"]
        if scored.score >= self.settings.marginal_score:
            return None
        names = [
            n
            for n, c in classified.items()
            if c.classification in _FAILING
            or (c.classification is Classification.NODATA and scored.reason)
        ]
        reasons = [
            f"score {scored.score:g} < marginal_score {self.settings.marginal_score:g}",
        ]
        if scored.reason:
            reasons.append(scored.reason)
        if names:
            labels = ", ".join(f"{n} ({classified[n].classification.value})" for n in names)
            reasons.append(f"failed: {labels}")
        return names, reasons

    def _metric_result(
        self,
        spec: _Spec,
        verdict: Verdict,
        verdict_round: int | None,
        failed_names: set[str],
        result: MetricClassification | None,
        pending: tuple[int, int] | None,
        scored: ScoreResult | None,
        evidence: Sequence[MannWhitneyEvidence],
    ) -> MetricResult:
        name = spec.config.name
        if verdict is Verdict.FAIL:
            metric_verdict = Verdict.FAIL if name in failed_names else Verdict.RUNNING
            metric_round = verdict_round if name in failed_names else None
        elif verdict in (Verdict.PASS, Verdict.INCONCLUSIVE):
            metric_verdict, metric_round = verdict, verdict_round
        else:
            metric_verdict, metric_round = Verdict.RUNNING, None

        statistics: dict[str, Any] = {
            "classification": None if result is None else result.classification.value,
            "critical": bool(result and result.critical),
            "group": spec.group,
            "group_score": None if scored is None else scored.group_scores.get(spec.group),
            "direction": spec.direction,
            "confidence": self.confidence,
            "tolerance": self.tolerance,
            "effect_size_measure": spec.effect.measure,
            "per_round_value": value_description(
                spec.config.kind, counts_as="error_ratio", quantile=spec.quantile
            ),
        }
        if pending is not None:
            reasons = [
                f"pending: {pending[0]} canary and {pending[1]} baseline values, "
                f"{self.min_samples} each needed"
            ]
            statistics.update(n_canary=pending[0], n_baseline=pending[1])
        else:
            assert result is not None
            statistics.update(
                n_canary=result.n_canary,
                n_baseline=result.n_baseline,
                mean_ratio=_clean(result.deviation),
                effect_size=_clean(result.effect_size),
            )
            reasons = [self._describe(result)]
            interval = result.interval
            if interval is not None:
                statistics.update(
                    interval=[_clean(interval.lower), _clean(interval.upper)],
                    estimate=_clean(interval.estimate),
                    p_value=_clean(interval.p_value),
                    interval_achieved=interval.lower_achieved and interval.upper_achieved,
                    bounds=None if result.bounds is None else [_clean(b) for b in result.bounds],
                )
        return MetricResult(
            name=name,
            verdict=metric_verdict,
            round=metric_round,
            reasons=reasons,
            statistics=statistics,
            evidence=[entry.to_json() for entry in evidence],
        )

    def _describe(self, result: MetricClassification) -> str:
        label = result.classification.value
        interval = result.interval
        if interval is None:
            return f"{label}: {result.reason}" if result.reason else label
        level = f"{self.confidence * 100:g}%"
        text = (
            f"{label}: canary - baseline shift in [{interval.lower:.4g}, {interval.upper:.4g}] "
            f"({level}), estimate {interval.estimate:.4g}, tolerance ±{result.bounds[1]:.4g}"
            if result.bounds is not None
            else label
        )
        if math.isfinite(result.deviation):
            text += f"; mean ratio {result.deviation:.3g}"
        if result.critical:
            text += " (critical)"
        return text
