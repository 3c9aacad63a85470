"""The sequential judge (default): anytime-valid mixture e-processes per metric.

Counts metrics. Round k gives a 2x2 table (canary x_k failures of n_k, baseline y_k
of m_k). Given the margins, x_k is Fisher-noncentral hypergeometric with odds ratio
psi (see `canary.judge.hypergeometric`). With ell_k(psi) = log LR_k(psi; 1) and the
running sum S(psi) = sum_k ell_k(psi) kept on a fixed psi grid in the state:

    log M_fail = log mean_{psi in tolerance * fail_grid} exp(S(psi)) - S(tolerance)
    log M_pass = log mean_{psi in margin * pass_grid}    exp(S(psi)) - S(margin)

M_fail is a nonnegative supermartingale whenever the canary's odds ratio is at most
`tolerance`, M_pass whenever it is at least `margin` (the noncentral hypergeometric
is an exponential family in log psi, so E_psi'[LR(psi; psi0)] <= 1 for psi' on the
far side of psi0 from psi). By Ville's inequality P(ever M >= 1/alpha) <= alpha, so
re-judging every round costs nothing. Mixture e-processes: Robbins (1970); Ramdas,
Grünwald, Vovk & Shafer, "Game-theoretic statistics and safe anytime-valid
inference", Statist. Sci. 38 (2023).

FAIL. Two evidence processes per tested event, each a mixture over start times so
that a regression after a clean period is caught at once: with w_j = 1/(j (j + 1))
(summing to 1) for the j-th round with evidence,

    E_req = mean_{psi} sum_j w_j prod_{k >= j} LR_k(psi; tolerance)   (request level)
    E_rob = sum_j w_j mean_eta exp(L_j(eta) / (1 + a_j tau^2))          (robust)

E_req is updated by R_j(psi) = LR_j(psi) (R_{j-1}(psi) + w_j); an average of
e-processes is an e-process, so Ville's inequality holds for it as for M_fail
(unlike a Shiryaev-Roberts or CUSUM detector, whose guarantee is an average run
length). E_rob (`canary.judge.robust`) scores each round by its excess canary
failures scaled by the baseline's own spread between rounds and pods, with a
Student-t likelihood ratio; it does not assume independent requests. FAIL when
min(E_req, E_rob) >= K / alpha_fail (K judged metrics: Bonferroni): if either
process's null holds, P(ever FAIL) <= alpha_fail — exactly for E_req under
independent requests, approximately (measured on the benchmark) for E_rob under
round- and pod-level heterogeneity. `robust = false` drops E_rob (FAIL on E_req).

PASS when M_pass >= 1 / alpha_pass and the canary has served `min_requests`.

The time-uniform confidence interval of the odds ratio is the set of psi0 on a log
grid whose two-sided mixture e-process stays below 1/(1 - 0.95) (a confidence
sequence: Howard, Ramdas, McAuliffe & Sekhon, Ann. Statist. 49 (2021)). At a verdict
the reasons add the estimate: the exact conditional MLE over the rounds' tables
(`hypergeometric.conditional_mle`), which the state keeps for it.

Histogram metrics. The first round with baseline data is the warm-up: bounds b
nearest the baseline's `quantiles` (default p50, p90, p99) are chosen from it, fixed
and recorded in the state; that round adds no evidence. Afterwards the event "slower
than b" (x = n - count(le=b)) is tested per bound as above. FAIL averages each
process over the bounds (an average of e-processes is an e-process); PASS needs every
bound that can pass: a bound whose expected exceedances at the warm-up's traffic
cannot reach PASS within the budget counts for FAIL only (and the reasons say so).

Rounds with `error` set, without data in an arm, or without any (or only) failures
multiply the evidence by 1. Metrics of kind `value` are not judged by this judge:
they are reported as inconclusive with a reason and take no part in the overall
verdict (use the threshold or mann_whitney judge for them).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from canary.config import AnalysisSettings, SequentialMetric
from canary.errors import JudgeStateError
from canary.judge.combine import combine
from canary.judge.hypergeometric import (
    conditional_mle,
    informative,
    round_loglik,
    round_logliks,
)
from canary.judge.robust import (
    TRIM_PODS,
    BaselineSpread,
    log_evidence,
    round_contrast,
    round_log_ratios,
    severe_etas,
    start_weight,
    without_worst_pod,
)
from canary.judge.states import (
    RobustStarts,
    SequentialMetricState,
    SequentialState,
    SpreadSums,
    Track,
    check_metrics,
)
from canary.model import (
    Arm,
    Counts,
    Histogram,
    Judgement,
    MetricKind,
    MetricResult,
    RoundData,
    Verdict,
)

__all__ = [
    "DEFAULT_ALPHA_FAIL",
    "DEFAULT_ALPHA_PASS",
    "DEFAULT_FAIL_GRID",
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_REQUESTS",
    "DEFAULT_PASS_GRID",
    "DEFAULT_QUANTILES",
    "DEFAULT_TOLERANCE",
    "MetricParameters",
    "SequentialJudge",
    "choose_bounds",
]

DEFAULT_ALPHA_FAIL = 0.01
DEFAULT_ALPHA_PASS = 0.05
DEFAULT_TOLERANCE = 1.0
DEFAULT_MARGIN = 1.5
#: FAIL alternatives as multiples of `tolerance`.
DEFAULT_FAIL_GRID = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
#: PASS alternatives as multiples of `margin`: (1.0, 0.8, 0.6) at the default margin 1.5.
DEFAULT_PASS_GRID = (1.0 / 1.5, 0.8 / 1.5, 0.6 / 1.5)
DEFAULT_MIN_REQUESTS = 1000
DEFAULT_QUANTILES = (0.5, 0.9, 0.99)
CONFIDENCE = 0.95

# The confidence-interval grid: psi0 = 10^(i/20), i = -20..20 (0.1 to 10, steps of 12%);
# each psi0 is tested against psi0 * 10^(+-s/20) for the steps below (x1.26 ... x5).
_CI_LOG10 = np.arange(-20, 21) / 20.0
_CI_STEPS = (2, 4, 6, 10, 14)
DEFAULT_ROBUST_CV = 0.5
#: Per pod name, (events, requests) of the baseline's and of the canary's pods.
PodEvents = tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]
#: Budget in rounds when the settings give neither max_rounds nor max_duration.
DEFAULT_BUDGET_ROUNDS = 60
#: log R of a start-time mixture before any start (exp underflows to 0; JSON-safe).
_LOG_ZERO = -1.0e9


_MAX, _SUM = np.maximum.reduce, np.add.reduce


def _logmeanexp(values: np.ndarray) -> float:
    """log(mean(exp(values))) of a 1-D array, computed stably."""
    # The ufuncs' reductions directly (what .max() and .sum() call, without their wrappers).
    top = float(_MAX(values))
    return top + math.log(float(_SUM(np.exp(values - top))) / values.size)


def _logmeanexp_rows(values: np.ndarray) -> np.ndarray:
    """log(mean(exp(row))) for every row of a 2-D array."""
    top = values.max(axis=1)
    return top + np.log(np.exp(values - top[:, None]).sum(axis=1) / values.shape[1])


class MetricParameters:
    """The resolved settings of one metric and the psi grid its state is kept on."""

    def __init__(self, config: SequentialMetric, n_judged: int, budget_rounds: int = 60) -> None:
        name = config.name
        self.name = name
        self.kind = config.kind
        self.alpha_fail = config.alpha_fail if config.alpha_fail is not None else DEFAULT_ALPHA_FAIL
        self.alpha_pass = config.alpha_pass if config.alpha_pass is not None else DEFAULT_ALPHA_PASS
        self.tolerance = config.tolerance if config.tolerance is not None else DEFAULT_TOLERANCE
        self.margin = config.margin if config.margin is not None else DEFAULT_MARGIN
        fail_grid = tuple(config.fail_grid) if config.fail_grid else DEFAULT_FAIL_GRID
        pass_grid = tuple(config.pass_grid) if config.pass_grid else DEFAULT_PASS_GRID
        if any(not (g > 1) for g in fail_grid):
            raise ValueError(f"metric {name!r}: fail_grid multiples must be above 1")
        if any(not (0 < g < 1) for g in pass_grid):
            raise ValueError(f"metric {name!r}: pass_grid multiples must be between 0 and 1")
        self.fail_grid = fail_grid
        self.pass_grid = pass_grid
        self.min_requests = (
            config.min_requests if config.min_requests is not None else DEFAULT_MIN_REQUESTS
        )
        quantiles = tuple(config.quantiles) if config.quantiles else DEFAULT_QUANTILES
        if any(not (0 < q < 1) for q in quantiles):
            raise ValueError(f"metric {name!r}: quantiles must be between 0 and 1")
        self.quantiles = quantiles
        self.robust = config.robust if config.robust is not None else True
        self.robust_cv = config.robust_cv if config.robust_cv is not None else DEFAULT_ROBUST_CV
        self.budget_rounds = budget_rounds
        #: Relative rate increases the robust process mixes over: psi - 1 per fail_grid,
        #: then two severe ones set per round from the baseline (`robust.severe_etas`).
        self.etas = np.array([g - 1.0 for g in fail_grid] + [0.0, 0.0])
        #: The etas the Gaussian part uses for the severe columns (fixed).
        self.etas_ref = np.array([g - 1.0 for g in fail_grid] + [30.0, 1000.0])
        self.n_judged = n_judged
        self.log_fail_threshold = math.log(n_judged / self.alpha_fail)
        self.log_pass_threshold = math.log(1.0 / self.alpha_pass)

        # One grid of log psi holding the CI grid, tolerance, margin and both mixtures.
        ci = _CI_LOG10 * math.log(10.0)
        ci[len(ci) // 2] = 0.0  # psi = 1 exactly
        extra = [math.log(self.tolerance), math.log(self.margin)]
        extra += [math.log(self.tolerance * g) for g in fail_grid]
        extra += [math.log(self.margin * g) for g in pass_grid]
        grid = np.concatenate([ci, np.array(extra)])
        grid.flags.writeable = False
        self.log_psi = grid
        n_ci = len(ci)
        self.ci_slice = slice(0, n_ci)
        self.i_tol = n_ci
        self.i_margin = n_ci + 1
        start = n_ci + 2
        # The fail and pass grid points as slices (views, cheaper than index arrays).
        self.fail_slice = slice(start, start + len(fail_grid))
        self.pass_slice = slice(start + len(fail_grid), start + len(fail_grid) + len(pass_grid))
        #: The grid points verdicts use (tolerance, margin, the fail and pass grids).
        self.verdict_points = slice(n_ci, len(grid))
        idx = np.arange(n_ci)
        steps = np.array([s for step in _CI_STEPS for s in (step, -step)])
        self.ci_alternatives = np.clip(idx[:, None] + steps[None, :], 0, n_ci - 1)
        self.ci_psi = np.exp(ci)
        self.log_ci_threshold = math.log(1.0 / (1.0 - CONFIDENCE))


def choose_bounds(histogram: Histogram, quantiles: Sequence[float]) -> list[float]:
    """Finite bucket bounds whose cumulative fraction is nearest each quantile.

    Only bounds with some observations on each side (0 < F(b) < 1) qualify; duplicates
    are dropped, so fewer bounds than quantiles may come back (none for no data).
    """
    total = histogram.total
    if total <= 0:
        return []
    candidates = [
        (b, c / total)
        for b, c in zip(histogram.bounds, histogram.buckets, strict=True)
        if math.isfinite(b) and 0 < c < total
    ]
    chosen: list[float] = []
    for q in quantiles:
        if not candidates:
            break
        bound = min(candidates, key=lambda bc: (abs(bc[1] - q), bc[0]))[0]
        if bound not in chosen:
            chosen.append(bound)
    return sorted(chosen)


def pass_information(fraction: float, canary_per_round: float, rounds: int) -> float:
    """Expected information sum n p (1 - p) a bound carries over `rounds` rounds."""
    return canary_per_round * rounds * fraction * (1.0 - fraction)


def needed_information(params: MetricParameters) -> float:
    """n p (1 - p) a track needs to reach PASS against the margin at true odds ratio 1.

    The log-odds estimate has variance about 1 / (n p (1 - p)); the mixture reaches
    1 / alpha_pass roughly when (log margin)^2 n p (1 - p) / 2 exceeds
    log(1 / alpha_pass) plus the mixture's cost (log of the grid size) and one
    standard deviation of slack.
    """
    need = math.log(1.0 / params.alpha_pass) + math.log(len(params.pass_grid)) + 1.0
    return 2.0 * need / math.log(params.margin) ** 2


def _new_track(params: MetricParameters) -> Track:
    """Running sums of one tested event (a counts metric, or one histogram bound)."""
    return _with_restart(Track(loglik=(0.0,) * len(params.log_psi)), params)


def _with_restart(track: Track, params: MetricParameters) -> Track:
    """`track` with fresh start-time mixtures (request-level and robust) and spread."""
    return replace(
        track,
        late=(_LOG_ZERO,) * len(params.fail_grid),
        starts=RobustStarts(),
        spread=SpreadSums(),
        canary_pods=0,
    )


class _Numeric:
    """A track's running sums as read-only arrays (`Track.numeric`), with the baseline's
    spread after its last round: what `_update_track` and `_statistics` compute with."""

    __slots__ = ("a", "b", "late", "log_w", "loglik", "logs", "spread")

    def __init__(
        self,
        loglik: np.ndarray,
        late: np.ndarray | None,
        logs: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        log_w: np.ndarray,
        spread: BaselineSpread,
    ) -> None:
        for array in (loglik, late, logs, a, b, log_w):
            if array is not None:
                array.setflags(write=False)
        self.loglik, self.late, self.logs = loglik, late, logs
        self.a, self.b, self.log_w, self.spread = a, b, log_w, spread


def _numeric(track: Track, params: MetricParameters) -> _Numeric:
    """The track's sums as arrays: those the judge kept with it, else read from its tuples."""
    numeric = track.numeric
    if numeric is not None:
        return numeric
    starts = track.starts or RobustStarts()
    numeric = _Numeric(
        loglik=np.asarray(track.loglik, dtype=float),
        late=None if track.late is None else np.asarray(track.late, dtype=float),
        logs=np.asarray(starts.logs, dtype=float).reshape(-1, len(params.etas)),
        a=np.asarray(_or_zeros(starts.a, len(starts.logs)), dtype=float),
        b=np.asarray(_or_zeros(starts.b, len(starts.logs)), dtype=float),
        log_w=np.asarray(starts.log_w, dtype=float),
        spread=BaselineSpread(track.spread),
    )
    object.__setattr__(track, "numeric", numeric)
    return numeric


def _keep_numeric(track: Track, numeric: _Numeric) -> Track:
    object.__setattr__(track, "numeric", numeric)
    return track


class SequentialJudge:
    """Anytime-valid sequential judge; see the module docstring for the statistics.

    `explain=False` skips the confidence intervals and reasons (same verdicts, for
    bulk backtests and benchmarks); its states then keep S(psi) at the grid points
    verdicts use only (NaN at the interval's), so they are not for storing. The
    robustness settings are per metric
    (`robust`, `robust_cv` in `SequentialMetric`).
    """

    name = "sequential"

    def __init__(
        self,
        metrics: Sequence[SequentialMetric],
        settings: AnalysisSettings,
        *,
        explain: bool = True,
    ) -> None:
        self.metrics = list(metrics)
        self.settings = settings
        self.explain = explain
        judged = [m for m in self.metrics if m.kind is not MetricKind.VALUE]
        if not judged:
            names = ", ".join(m.name for m in self.metrics) or "none"
            raise ValueError(
                f"the sequential judge judges counts and histogram metrics; {names} "
                "are of kind value (use the threshold or mann_whitney judge)"
            )
        budget = _budget_rounds(settings)
        self.params = {m.name: MetricParameters(m, len(judged), budget) for m in judged}
        self.ignored = [m.name for m in self.metrics if m.kind is MetricKind.VALUE]
        self._rounds: Sequence[RoundData] | None = None
        self._logliks: dict[tuple[str, tuple[int, int, int, int]], np.ndarray] = {}
        self._batched: set[tuple[str, tuple[float, ...] | None]] = set()

    def for_rounds(self, rounds: Sequence[RoundData]) -> SequentialJudge:
        """This judge, for judging `rounds` in order (a replay): a round's likelihood
        ell_k(psi) depends only on its table and the grid, not on the state, so each
        metric's are computed for all the rounds at once, at its first round with
        evidence; the recursion then runs round by round as in `update`, with the same
        results to the last bit."""
        judge = copy.copy(self)
        judge._rounds = rounds
        judge._logliks = {}
        judge._batched = set()
        return judge

    # ------------------------------------------------------------------ interface

    def initial_state(self) -> SequentialState:
        metrics = {
            name: SequentialMetricState(tracks=(_new_track(params),))
            if params.kind is MetricKind.COUNTS
            else SequentialMetricState(histogram=True)
            for name, params in self.params.items()
        }
        return SequentialState(round=0, metrics=metrics)

    def read_state(self, data: Mapping[str, Any]) -> SequentialState:
        state = SequentialState.from_json(data)
        check_metrics(state.metrics, self.params, "metrics")
        for name, params in self.params.items():
            _check_entry(params, state.metrics[name], f"metrics.{name}")
        return state

    def update(
        self, state: SequentialState, round: RoundData, *, final: bool = False
    ) -> tuple[SequentialState, Judgement]:
        """Add one round's evidence; cost independent of how many rounds came before."""
        k = state.round + 1
        new_metrics: dict[str, SequentialMetricState] = {}
        results: dict[str, MetricResult] = {}
        for config in self.metrics:
            name = config.name
            if name not in self.params:
                results[name] = MetricResult(
                    name=name,
                    verdict=Verdict.INCONCLUSIVE if final else Verdict.RUNNING,
                    round=k if final else None,
                    reasons=[
                        "not judged by the sequential judge (kind value): "
                        "use the threshold or mann_whitney judge"
                    ],
                    statistics={"judged": False},
                )
                continue
            entry, result = self._update_metric(
                self.params[name], state.metrics[name], round, k, final
            )
            new_metrics[name] = entry
            results[name] = result
        extra = []
        if self.ignored:
            extra.append(f"not judged (kind value): {', '.join(self.ignored)}")
        judgement = combine(results, final=final, round=k, ignored=self.ignored, reasons=extra)
        return SequentialState(round=k, metrics=new_metrics), judgement

    # ------------------------------------------------------------------ one metric

    def _update_metric(
        self,
        params: MetricParameters,
        old: SequentialMetricState,
        round: RoundData,
        k: int,
        final: bool,
    ) -> tuple[SequentialMetricState, MetricResult]:
        entry = old
        evidence: dict[str, Any] = {"round": k}
        tables, note = _round_tables(params, entry.bounds, round)
        if params.kind is MetricKind.HISTOGRAM and entry.bounds is None and not round.error:
            baseline = round.baseline.get(params.name)
            if isinstance(baseline, Histogram) and baseline.total > 0:
                bounds = choose_bounds(baseline, params.quantiles)
                if bounds:
                    canary = round.canary.get(params.name)
                    entry = replace(
                        entry,
                        bounds=tuple(bounds),
                        warmup_round=k,
                        tracks=tuple(_new_track(params) for _ in bounds),
                        pass_bounds=tuple(_pass_bounds(params, baseline, canary, bounds, k)),
                    )
                    note = "warm-up: bounds " + ", ".join(_fmt_bound(b) for b in bounds)
                else:
                    note = "warm-up: baseline data fall in one bucket, bounds not chosen yet"
            else:
                note = "warm-up: waiting for baseline data"

        if tables is not None:
            pods = [_pod_events(round, params.name, b) for b in entry.bounds or (None,)]
            entry = replace(
                entry,
                tracks=tuple(
                    self._update_track(params, track, table, pod, entry.bounds)
                    for track, table, pod in zip(entry.tracks, tables, pods, strict=True)
                ),
                requests=entry.requests + tables[0][1],
            )
            evidence["canary"] = [{"total": t[1], "failed": t[0]} for t in tables]
            evidence["baseline"] = [{"total": t[3], "failed": t[2]} for t in tables]
        if note:
            evidence["note"] = note

        stats, log_fail, log_pass = self._statistics(params, entry)
        evidence["log_e_fail"] = log_fail
        evidence["log_e_pass"] = log_pass
        fail_round, pass_round = entry.fail_round, entry.pass_round
        if fail_round is None and log_fail is not None and log_fail >= params.log_fail_threshold:
            fail_round = k
        if (
            pass_round is None
            and log_pass is not None
            and log_pass >= params.log_pass_threshold
            and entry.requests >= params.min_requests
        ):
            pass_round = k
        estimates = entry.estimates
        if self.explain and (k in (fail_round, pass_round) or final):
            estimates = tuple(_estimate(track) for track in entry.tracks)
        if (fail_round, pass_round, estimates) != (
            entry.fail_round,
            entry.pass_round,
            entry.estimates,
        ):
            entry = replace(
                entry, fail_round=fail_round, pass_round=pass_round, estimates=estimates
            )
        _add_estimates(stats, entry.estimates)

        if entry.fail_round is not None:
            verdict, at = Verdict.FAIL, entry.fail_round
        elif entry.pass_round is not None:
            verdict, at = Verdict.PASS, entry.pass_round
        elif final:
            verdict, at = Verdict.INCONCLUSIVE, k
        else:
            verdict, at = Verdict.RUNNING, None
        stats["fail_round"] = entry.fail_round
        stats["pass_round"] = entry.pass_round
        reasons = self._reasons(params, entry, stats, verdict, note) if self.explain else []
        result = MetricResult(
            name=params.name,
            verdict=verdict,
            round=at,
            reasons=reasons,
            statistics=stats,
            evidence=[evidence],
        )
        return entry, result

    def _update_track(
        self,
        params: MetricParameters,
        old: Track,
        table: tuple[int, int, int, int] | None,
        pods: PodEvents | None,
        bounds: tuple[float, ...] | None = None,
    ) -> Track:
        """Add one round to one track (`table` None: a round without data, no change)."""
        track = old if old.late is not None else _with_restart(old, params)
        if table is None:
            return track
        x, n, y, m = table
        numeric = _numeric(track, params)
        spread = BaselineSpread(track.spread)
        baseline_pods, canary_pods = pods or ({}, {})
        spread.add(y, m, baseline_pods)
        with_requests = sum(1 for _, ni in canary_pods.values() if ni > 0)
        totals = {
            "canary": (track.canary[0] + n, track.canary[1] + x),
            "baseline": (track.baseline[0] + m, track.baseline[1] + y),
            "spread": spread.sums(),
            "canary_pods": max(track.canary_pods or 0, with_requests),
        }
        if not informative(x, n, y, m):
            unchanged = numeric.loglik, numeric.late, numeric.logs, numeric.a, numeric.b
            return _keep_numeric(
                replace(track, **totals), _Numeric(*unchanged, numeric.log_w, spread)
            )
        lik = self._loglik(params, table, bounds)
        rounds = track.rounds + 1
        # Both start-time mixtures start a new e-process at each round with evidence,
        # the j-th with weight w_j = 1 / (j (j + 1)).
        log_w = math.log(start_weight(rounds))
        # Request-level: R_j(psi) = LR_j(psi; tolerance) (R_{j-1}(psi) + w_j).
        ell = lik[params.fail_slice] - lik[params.i_tol]
        late = np.logaddexp(numeric.late, log_w) + ell
        # Robust: round j's score added to every start, the new one included. Starts
        # stop at the budget, so a round costs at most budget x grid operations.
        starts = track.starts or RobustStarts()
        size = len(params.etas)
        logs, a, b, log_ws = numeric.logs, numeric.a, numeric.b, numeric.log_w
        weights = starts.log_w
        if rounds <= params.budget_rounds:
            count = len(logs)
            logs = np.zeros((count + 1, size))
            logs[:count] = numeric.logs
            a, b, log_ws = np.zeros(count + 1), np.zeros(count + 1), np.empty(count + 1)
            a[:count], b[:count], log_ws[:count] = numeric.a, numeric.b, numeric.log_w
            log_ws[count] = log_w
            weights = (*weights, log_w)
        kappa2 = spread.kappa2(params.robust_cv)
        x_rob, n_rob = without_worst_pod(x, n, list(canary_pods.values()))
        contrast = round_contrast(x_rob, n_rob, y, m, params.tolerance, kappa2, spread.rate())
        if contrast is not None:
            z, d = contrast
            etas = params.etas.copy()
            etas[-2:] = severe_etas(spread.rate(), params.tolerance)
            # New arrays (never in place): the previous round's may be shared.
            logs = logs + round_log_ratios(z, d, etas)[None, :]
            # The Gaussian random-effects part (on the fixed etas_ref grid) needs only
            # a = sum d^2 and b = sum d z since each start.
            a = a + d * d
            b = b + d * z
        loglik = numeric.loglik + lik
        new = Track(
            loglik=tuple(loglik.tolist()),
            rounds=rounds,
            tables=(*(track.tables or ()), (x, n, y, m)),
            late=tuple(late.tolist()),
            starts=RobustStarts(
                logs=tuple(map(tuple, logs.tolist())),
                a=tuple(a.tolist()),
                b=tuple(b.tolist()),
                log_w=weights,
            ),
            retired=track.retired,
            order=track.order,
            **totals,
        )
        return _keep_numeric(new, _Numeric(loglik, late, logs, a, b, log_ws, spread))

    def _loglik(
        self,
        params: MetricParameters,
        table: tuple[int, int, int, int],
        bounds: tuple[float, ...] | None,
    ) -> np.ndarray:
        """ell(psi) of one informative table, at every grid point (`round_loglik`), or
        without explanations at the points verdicts use only (`round_logliks`). For a
        judge `for_rounds`, from the metric's batch (computed at its first round with
        evidence, with the bounds then fixed)."""
        points = slice(None) if self.explain else params.verdict_points
        if self._rounds is not None:
            key = (params.name, table)
            if key not in self._logliks and (params.name, bounds) not in self._batched:
                self._batched.add((params.name, bounds))
                tables = []
                for round in self._rounds:
                    try:
                        found, _ = _round_tables(params, bounds, round)
                    except ValueError:  # raised again where that round is judged
                        continue
                    tables += [t for t in found or () if informative(*t)]
                tables = list(dict.fromkeys(tables))
                values = round_logliks(tables, params.log_psi, points)
                self._logliks.update(
                    ((params.name, t), v) for t, v in zip(tables, values, strict=True)
                )
            lik = self._logliks.get(key)
            if lik is not None:
                return lik
        if self.explain:  # the daemon's path: one table, every point
            return round_loglik(*table, params.log_psi).loglik
        return round_logliks([table], params.log_psi, points)[0]

    # ------------------------------------------------------------------ summaries

    def _statistics(
        self, params: MetricParameters, entry: SequentialMetricState
    ) -> tuple[dict[str, Any], float | None, float | None]:
        tracks = entry.tracks
        bounds = None if entry.bounds is None else list(entry.bounds)
        stats: dict[str, Any] = {
            "requests": entry.requests,
            "min_requests": params.min_requests,
            "fail_threshold": params.n_judged / params.alpha_fail,
            "pass_threshold": 1.0 / params.alpha_pass,
            "tolerance": params.tolerance,
            "margin": params.margin,
        }
        if params.kind is MetricKind.HISTOGRAM:
            stats["bounds"] = bounds
            stats["warmup_round"] = entry.warmup_round
        if not tracks:
            stats["e_fail"] = stats["e_pass"] = None
            return stats, None, None
        per_track = []
        requests_fail, robust_fail, passes = [], [], []
        pass_bounds = None if entry.pass_bounds is None else list(entry.pass_bounds)
        for index, track in enumerate(tracks):
            numeric = _numeric(track, params)
            s = numeric.loglik
            log_req = _logmeanexp(numeric.late) if numeric.late is not None else _LOG_ZERO
            spread = numeric.spread
            canary_pods = track.canary_pods or 0
            baseline_pods = spread.pod_count
            rho2 = spread.rho2(params.robust_cv)
            tau2 = rho2 * _pod_factor(baseline_pods, canary_pods)
            log_rob = log_evidence(
                numeric.logs, numeric.a, numeric.b, numeric.log_w, params.etas_ref, tau2
            )
            log_rob = max(log_rob, _LOG_ZERO)
            log_pass = _logmeanexp(s[params.pass_slice]) - float(s[params.i_margin])
            requests_fail.append(log_req)
            robust_fail.append(log_rob)
            can_pass = pass_bounds is None or entry.bounds[index] in pass_bounds
            if can_pass:
                passes.append(log_pass)
            low, high = _interval(params, s) if self.explain else (None, None)
            per_track.append(
                {
                    "canary": {"total": track.canary[0], "failed": track.canary[1]},
                    "baseline": {"total": track.baseline[0], "failed": track.baseline[1]},
                    "rounds_with_evidence": track.rounds,
                    "e_fail": _safe_exp(min(log_req, log_rob) if params.robust else log_req),
                    "e_fail_requests": _safe_exp(log_req),
                    "e_fail_robust": _safe_exp(log_rob),
                    "e_pass": _safe_exp(log_pass),
                    "counts_for_pass": can_pass,
                    "odds_ratio": None,
                    "ci_low": low,
                    "ci_high": high,
                    "round_cv": math.sqrt(spread.kappa2(params.robust_cv)),
                    "pod_cv": math.sqrt(rho2),
                    "pods": {
                        "canary": canary_pods,
                        "baseline": baseline_pods,
                    },
                }
            )
        # The mean of one e-value is itself (log(exp(0) / 1) = 0).
        log_req = _log_mean(requests_fail)
        log_rob = _log_mean(robust_fail)
        log_fail = min(log_req, log_rob) if params.robust else log_req
        log_pass = float(min(passes)) if passes else None
        stats["e_fail_requests"] = _safe_exp(log_req)
        stats["e_fail_robust"] = _safe_exp(log_rob)
        stats["robust"] = params.robust
        stats["e_fail"] = _safe_exp(log_fail)
        stats["e_pass"] = _safe_exp(log_pass) if log_pass is not None else 0.0
        stats["confidence"] = CONFIDENCE
        if params.kind is MetricKind.COUNTS:
            stats.update({k: v for k, v in per_track[0].items()})
        else:
            for bound, item in zip(entry.bounds, per_track, strict=True):
                item["bound"] = bound
            stats["per_bound"] = per_track
            stats["pass_bounds"] = pass_bounds if pass_bounds is not None else bounds
        return stats, log_fail, log_pass

    def _reasons(
        self,
        params: MetricParameters,
        entry: SequentialMetricState,
        stats: Mapping[str, Any],
        verdict: Verdict,
        note: str | None,
    ) -> list[str]:
        reasons: list[str] = []
        fail_need = stats["fail_threshold"]
        pass_need = stats["pass_threshold"]
        if params.kind is MetricKind.COUNTS and stats.get("e_fail") is not None:
            reasons.append(
                f"canary error odds {_fmt_interval(stats['ci_low'], stats['ci_high'])} "
                f"baseline ({CONFIDENCE:.0%} time-uniform){_fmt_estimate(stats)}; "
                f"{stats['canary']['failed']}/{stats['canary']['total']} canary vs "
                f"{stats['baseline']['failed']}/{stats['baseline']['total']} baseline failed"
            )
        elif params.kind is MetricKind.HISTOGRAM and entry.bounds:
            for item in stats.get("per_bound", []):
                reasons.append(
                    f"odds of slower than {_fmt_bound(item['bound'])}: "
                    f"{_fmt_interval(item['ci_low'], item['ci_high'])} baseline "
                    f"({CONFIDENCE:.0%} time-uniform){_fmt_estimate(item)}"
                )
        if stats.get("e_fail") is not None:
            reasons.append(
                f"fail evidence {_fmt_e(stats['e_fail'])} (fails at {_fmt_e(fail_need)}), "
                f"pass evidence {_fmt_e(stats['e_pass'])} (passes at {_fmt_e(pass_need)})"
            )
        if verdict is Verdict.FAIL:
            reasons.insert(
                0,
                f"FAIL at round {entry.fail_round}: canary odds above the tolerance "
                f"({params.tolerance:g}x baseline)",
            )
        elif verdict is Verdict.PASS:
            reasons.insert(
                0,
                f"PASS at round {entry.pass_round}: canary odds below the margin "
                f"({params.margin:g}x baseline)",
            )
        elif verdict is Verdict.INCONCLUSIVE:
            reasons.insert(0, "budget reached without enough evidence either way")
        if (
            verdict is not Verdict.FAIL
            and stats.get("e_pass") is not None
            and stats["e_pass"] >= pass_need
            and entry.requests < params.min_requests
        ):
            reasons.append(
                f"pass evidence reached but only {entry.requests} of "
                f"{params.min_requests} canary requests (min_requests)"
            )
        reasons.extend(_robust_reasons(params, stats))
        excluded = [
            b for b in (stats.get("bounds") or []) if b not in (stats.get("pass_bounds") or [])
        ]
        if excluded:
            reasons.append(
                "judged for FAIL only (too few requests slower than it to PASS within "
                f"{params.budget_rounds} rounds): " + ", ".join(_fmt_bound(b) for b in excluded)
            )
        if note:
            reasons.append(note)
        return reasons


# ---------------------------------------------------------------------- helpers


def _budget_rounds(settings: AnalysisSettings) -> int:
    """The analysis budget in rounds: max_rounds, else max_duration / interval."""
    if settings.max_rounds is not None:
        return int(settings.max_rounds)
    if settings.max_duration is not None and settings.interval > 0:
        return max(1, math.ceil(float(settings.max_duration) / float(settings.interval)))
    return DEFAULT_BUDGET_ROUNDS


def _round_tables(
    params: MetricParameters, bounds: tuple[float, ...] | None, round: RoundData
) -> tuple[list[tuple[int, int, int, int]] | None, str | None]:
    """A round's 2x2 tables (x, n, y, m) for one metric, one per track (a histogram's
    per bound fixed at its warm-up), or None and why the round adds no evidence (None
    too for a histogram before its warm-up). ValueError for an observation not of the
    metric's kind."""
    if round.error:
        return None, f"round error, no evidence: {round.error}"
    canary = round.canary.get(params.name)
    baseline = round.baseline.get(params.name)
    if params.kind is MetricKind.COUNTS:
        if isinstance(canary, Counts) and isinstance(baseline, Counts):
            return [(canary.failed, canary.total, baseline.failed, baseline.total)], None
        if canary is None and baseline is None:
            return None, "no data, no evidence"
        if not (canary is None or isinstance(canary, Counts)) or not (
            baseline is None or isinstance(baseline, Counts)
        ):
            raise ValueError(f"metric {params.name!r}: expected counts observations")
        return None, "no data in one arm, no evidence"
    for obs in (canary, baseline):
        if obs is not None and not isinstance(obs, Histogram):
            raise ValueError(f"metric {params.name!r}: expected histogram observations")
    if bounds is None:
        return None, None
    if not (isinstance(canary, Histogram) and isinstance(baseline, Histogram)):
        return None, "no data in one arm, no evidence" if canary or baseline else "no data"
    missing = [b for b in bounds if b not in canary.bounds or b not in baseline.bounds]
    if missing:
        return None, (
            f"bucket bound {_fmt_bound(missing[0])} chosen at warm-up is missing "
            "from this round's buckets: no evidence"
        )
    tables = []
    for b in bounds:
        c, bl = canary.exceeding(b), baseline.exceeding(b)
        tables.append((c.failed, c.total, bl.failed, bl.total))
    return tables, None


def _pod_events(round: RoundData, metric: str, bound: float | None) -> PodEvents:
    """(events, requests) per pod name of the baseline and of the canary, for one track."""
    return _arm_pod_events(round, Arm.BASELINE, metric, bound), _arm_pod_events(
        round, Arm.CANARY, metric, bound
    )


def _arm_pod_events(
    round: RoundData, arm: Arm, metric: str, bound: float | None
) -> dict[str, tuple[int, int]]:
    events: dict[str, tuple[int, int]] = {}
    for name, obs in round.pod_observations(arm, metric).items():
        if bound is None and isinstance(obs, Counts):
            events[name] = (obs.failed, obs.total)
        elif bound is not None and isinstance(obs, Histogram) and bound in obs.bounds:
            c = obs.exceeding(bound)
            events[name] = (c.failed, c.total)
    return events


def _pod_factor(baseline_pods: int, canary_pods: int) -> float:
    """1/J_c + 1/J_b: the variance of the pods' mean offset per unit pod variance.

    Without a canary breakdown the canary is taken as one pod (the cautious side).
    """
    if baseline_pods <= 0:
        return 0.0
    return 1.0 / max(canary_pods, 1) + 1.0 / baseline_pods


def _pass_bounds(
    params: MetricParameters,
    baseline: Histogram,
    canary: Any,
    bounds: Sequence[float],
    k: int,
) -> list[float]:
    """The bounds that carry enough expected exceedances to PASS within the budget.

    At the warm-up's traffic, a bound b with baseline fraction p slower than b gives
    about n p (1 - p) information per round for n canary requests; one that cannot
    reach `needed_information` in the rounds left is judged for FAIL only. When no
    bound can, the most informative one stays required (PASS then needs luck or time).
    """
    if isinstance(canary, Histogram) and canary.total > 0:
        per_round = float(canary.total)
    else:  # no canary data yet: assume a 10% canary
        per_round = baseline.total / 9.0
    rounds = max(params.budget_rounds - k, 1)
    need = needed_information(params)
    info = {
        b: pass_information(baseline.exceeding(b).failed / baseline.total, per_round, rounds)
        for b in bounds
    }
    eligible = [b for b in bounds if info[b] >= need]
    return eligible or [max(bounds, key=lambda b: info[b])]


def _log_mean(values: Sequence[float]) -> float:
    if len(values) == 1:
        return float(values[0])
    return _logmeanexp(np.asarray(values, dtype=float))


def _interval(params: MetricParameters, s: np.ndarray) -> tuple[float | None, float | None]:
    """Time-uniform CI: the grid psi0 not rejected by the two-sided mixture.

    A low end of 0.0 means below the grid (0.1), a high end of None above it (10);
    (None, None) means every grid psi0 is rejected: no constant odds ratio fits.
    """
    ci = s[params.ci_slice]
    log_e = _logmeanexp_rows(ci[params.ci_alternatives]) - ci
    kept = np.nonzero(log_e < params.log_ci_threshold)[0]
    if len(kept) == 0:
        return None, None
    low = float(params.ci_psi[kept[0]]) if kept[0] > 0 else 0.0
    last = len(ci) - 1
    high = float(params.ci_psi[kept[-1]]) if kept[-1] < last else None
    return low, high


def _estimate(track: Track) -> float | str | None:
    """The exact conditional MLE of the odds ratio over the track's rounds (JSON-safe:
    "inf" when the canary failed every request the margins allowed; None without data
    or in a state stored before the rounds' tables were kept)."""
    tables = track.tables
    if not tables:
        return None
    value = conditional_mle(tables)
    return "inf" if value is not None and math.isinf(value) else value


def _or_zeros(values: Sequence[float] | None, size: int) -> Sequence[float]:
    """A robust start column, or zeros in a state stored before it was kept."""
    return [0.0] * size if values is None else values


def _check_entry(params: MetricParameters, entry: SequentialMetricState, where: str) -> None:
    """Refuse a metric's entry that does not fit the metric as configured."""
    histogram = params.kind is MetricKind.HISTOGRAM
    if entry.histogram != histogram:
        found = "a histogram" if entry.histogram else "a counts"
        raise JudgeStateError(where, f"{found} metric's state, the metric is {params.kind.value}")
    expected = 1 if not histogram else len(entry.bounds or ())
    if len(entry.tracks) != expected:
        raise JudgeStateError(
            f"{where}.tracks", f"expected {expected} tracks, got {len(entry.tracks)}"
        )
    for i, track in enumerate(entry.tracks):
        if len(track.loglik) != len(params.log_psi):
            raise JudgeStateError(
                f"{where}.tracks[{i}].loglik",
                f"expected {len(params.log_psi)} values, got {len(track.loglik)}",
            )
        if track.late is not None and len(track.late) != len(params.fail_grid):
            raise JudgeStateError(
                f"{where}.tracks[{i}].late",
                f"expected {len(params.fail_grid)} values, got {len(track.late)}",
            )
        rows = track.starts.logs if track.starts is not None else ()
        for j, row in enumerate(rows):
            if len(row) != len(params.etas):
                raise JudgeStateError(
                    f"{where}.tracks[{i}].starts.logs[{j}]",
                    f"expected {len(params.etas)} values, got {len(row)}",
                )


def _add_estimates(stats: dict[str, Any], estimates: Sequence[Any] | None) -> None:
    """Put the estimates taken at the verdict into the statistics (counts: `odds_ratio`;
    histograms: each bound's)."""
    if not estimates:
        return
    if "per_bound" in stats:
        for item, value in zip(stats["per_bound"], estimates, strict=False):
            item["odds_ratio"] = value
    elif "odds_ratio" in stats:
        stats["odds_ratio"] = estimates[0]


def _robust_reasons(params: MetricParameters, stats: Mapping[str, Any]) -> list[str]:
    """What the robust evidence allowed for, and what the pods can and cannot show."""
    if stats.get("e_fail") is None:
        return []
    if not params.robust:
        return [
            "robust evidence off (robust = false): FAIL assumes independent requests "
            f"(request-level fail evidence {_fmt_e(stats['e_fail_requests'])})"
        ]
    items = stats.get("per_bound") or [stats]
    round_cv = max(float(t["round_cv"]) for t in items)
    pod_cv = max(float(t["pod_cv"]) for t in items)
    pods = items[0]["pods"]
    reasons = [
        f"fail evidence: request-level {_fmt_e(stats['e_fail_requests'])}, robust "
        f"{_fmt_e(stats['e_fail_robust'])} (FAIL needs both); the robust one allows "
        f"the baseline's spread: {round_cv:.0%} between rounds, {pod_cv:.0%} between pods"
    ]
    if pods["baseline"] < 2:
        reasons.append(
            "no per-pod breakdown of the baseline: differences between pods are not "
            "allowed for, only between rounds"
        )
    elif pods["canary"] >= TRIM_PODS:
        reasons.append(
            f"{pods['canary']} canary pods: one standing out from the others counts only "
            "as much as they predict (a version's regression shows in every pod)"
        )
    elif pods["canary"] <= 1:
        reasons.append(
            "a single canary pod: a difference may be that pod rather than the version; "
            "the robust evidence allows for the spread of the baseline's "
            f"{pods['baseline']} pods, but cannot tell a bad pod from a bad version"
        )
    return reasons


def _safe_exp(value: float) -> float:
    return math.exp(min(value, 700.0))


def _fmt_bound(bound: float) -> str:
    return f"{bound:g} ms"


def _fmt_e(value: float) -> str:
    if value >= 1e6 or value < 1e-3:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _fmt_estimate(stats: Mapping[str, Any]) -> str:
    """ ", estimate 2.3x (conditional MLE)" once a verdict has fixed the estimate."""
    value = stats.get("odds_ratio")
    if value is None:
        return ""
    if value == "inf":
        return ", estimate unbounded (every canary request the margins allow failed)"
    if value == 0.0:
        return ", estimate 0x (no canary request failed)"
    return f", estimate {value:.3g}x (conditional MLE)"


def _fmt_interval(low: float | None, high: float | None) -> str:
    if low is None:
        return "(no constant odds ratio fits)"
    lo = "<0.1" if low == 0.0 else f"{low:.2g}"
    hi = ">10" if high is None else f"{high:.2g}"
    return f"{lo}–{hi}x"
