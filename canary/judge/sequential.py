"""The sequential judge (default): anytime-valid mixture e-processes per metric (DESIGN §4.1).

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
re-judging every round costs nothing: FAIL when M_fail >= K / alpha_fail (K judged
metrics: Bonferroni), PASS when M_pass >= 1 / alpha_pass and the canary has served
`min_requests`. Mixture e-processes: Robbins (1970); Ramdas, Grünwald, Vovk & Shafer,
"Game-theoretic statistics and safe anytime-valid inference", Statist. Sci. 38 (2023).

The time-uniform confidence interval of the odds ratio is the set of psi0 on a log
grid whose two-sided mixture e-process stays below 1/(1 - 0.95) (a confidence
sequence: Howard, Ramdas, McAuliffe & Sekhon, Ann. Statist. 49 (2021)).

Histogram metrics. The first round with baseline data is the warm-up: bounds b
nearest the baseline's `quantiles` (default p50, p90, p99) are chosen from it, fixed
and recorded in the state; that round adds no evidence. Afterwards the event "slower
than b" (x = n - count(le=b)) is tested per bound as above. FAIL averages the per-bound
M_fail (an average of e-processes is an e-process); PASS needs every bound to pass.

Rounds with `error` set, without data in an arm, or without any (or only) failures
multiply the evidence by 1. Metrics of kind `value` are not judged by this judge:
they are reported as inconclusive with a reason and take no part in the overall
verdict (use the threshold or mann_whitney judge for them).

Over-dispersion guard (on by default). The guarantee assumes that within a round
whether a request lands on canary or baseline is independent of its outcome; a bad
pod whose error rate jumps from round to round breaks that and inflates false FAILs.
The guard keeps, besides S(psi), Q(psi) = sum_k (x_k - E_psi[x_k])^2 / Var_psi[x_k]
(Pearson's dispersion statistic, for every grid psi). At the estimate psi^ (the grid
maximum of S) with r rounds of data, when Q(psi^) is significant at 1% (chi-square,
r - 1 degrees of freedom), phi is the upper 95% confidence bound of the dispersion,
Q(psi^) / chi2_0.05(r - 1), else 1 (a conservative choice: few rounds give a loose
estimate, and a too-small phi is the dangerous side), and every e-value is computed
from S / phi instead of S (quasi-likelihood, McCullagh & Nelder, §4.5). For any
phi >= 1, even one chosen from the data, mean_psi exp(S(psi) / phi) <= (mean_psi
exp(S(psi)))^(1/phi) (Jensen: x^(1/phi) is concave), so a tempered e-value above
1/alpha implies an untempered one above it: the guarantees above still hold. With the
guard, FAIL and PASS also wait for 2 rounds with data (one round cannot show
dispersion). Under over-dispersion this is a mitigation, not a guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import chi2

from canary.config import AnalysisSettings, MetricConfig
from canary.judge.combine import combine
from canary.judge.hypergeometric import informative, round_loglik
from canary.model import Counts, Histogram, Judgement, MetricKind, MetricResult, RoundData, Verdict

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
#: With the guard, a track needs this many rounds with data before it can FAIL or PASS.
GUARD_MIN_ROUNDS = 2
_DISPERSION_LEVEL = 0.01
_CHI2_CRITICAL = chi2.isf(_DISPERSION_LEVEL, np.arange(1, 1001))  # index df - 1
#: phi is the upper 95% confidence bound of the dispersion: Q / chi2_{0.05}(df).
_CHI2_LOWER = chi2.ppf(0.05, np.arange(1, 1001))


def _logmeanexp(values: np.ndarray) -> float:
    """log(mean(exp(values))) of a 1-D array, computed stably."""
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()) / values.size)


def _logmeanexp_rows(values: np.ndarray) -> np.ndarray:
    """log(mean(exp(row))) for every row of a 2-D array."""
    top = values.max(axis=1)
    return top + np.log(np.exp(values - top[:, None]).sum(axis=1) / values.shape[1])


class MetricParameters:
    """The resolved settings of one metric and the psi grid its state is kept on."""

    def __init__(self, config: MetricConfig, n_judged: int) -> None:
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
        self.log_psi = grid
        n_ci = len(ci)
        self.ci_slice = slice(0, n_ci)
        self.i_tol = n_ci
        self.i_margin = n_ci + 1
        start = n_ci + 2
        self.i_fail = np.arange(start, start + len(fail_grid))
        self.i_pass = np.arange(start + len(fail_grid), start + len(fail_grid) + len(pass_grid))
        # The same points as slices (views, cheaper than index arrays).
        self.fail_slice = slice(start, start + len(fail_grid))
        self.pass_slice = slice(start + len(fail_grid), start + len(fail_grid) + len(pass_grid))
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


def _new_track(params: MetricParameters) -> dict[str, Any]:
    """Running sums of one tested event (a counts metric, or one histogram bound)."""
    size = len(params.log_psi)
    return {
        "loglik": [0.0] * size,  # S(psi) on params.log_psi
        "dispersion": [0.0] * (params.ci_slice.stop),  # Q(psi) on the CI grid
        "rounds": 0,  # rounds with an informative table
        "canary": [0, 0],  # requests, events
        "baseline": [0, 0],
    }


class SequentialJudge:
    """Anytime-valid sequential judge; see the module docstring for the statistics.

    `dispersion_guard=False` turns the over-dispersion guard off; `explain=False`
    skips the confidence intervals and reasons (same verdicts, for bulk backtests
    and benchmarks).
    """

    name = "sequential"

    def __init__(
        self,
        metrics: Sequence[MetricConfig],
        settings: AnalysisSettings,
        *,
        dispersion_guard: bool = True,
        explain: bool = True,
    ) -> None:
        self.metrics = list(metrics)
        self.settings = settings
        self.dispersion_guard = dispersion_guard
        self.explain = explain
        judged = [m for m in self.metrics if m.kind is not MetricKind.VALUE]
        if not judged:
            names = ", ".join(m.name for m in self.metrics) or "none"
            raise ValueError(
                f"the sequential judge judges counts and histogram metrics; {names} "
                "are of kind value (use the threshold or mann_whitney judge)"
            )
        self.params = {m.name: MetricParameters(m, len(judged)) for m in judged}
        self.ignored = [m.name for m in self.metrics if m.kind is MetricKind.VALUE]

    # ------------------------------------------------------------------ interface

    def initial_state(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for name, params in self.params.items():
            entry: dict[str, Any] = {"fail_round": None, "pass_round": None, "requests": 0}
            if params.kind is MetricKind.COUNTS:
                entry["tracks"] = [_new_track(params)]
            else:
                entry["bounds"] = None
                entry["warmup_round"] = None
                entry["tracks"] = []
            metrics[name] = entry
        return {"judge": self.name, "round": 0, "metrics": metrics}

    def update(
        self, state: Mapping[str, Any], round: RoundData, *, final: bool = False
    ) -> tuple[dict[str, Any], Judgement]:
        """Add one round's evidence; cost independent of how many rounds came before."""
        k = int(state["round"]) + 1
        new_metrics: dict[str, Any] = {}
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
                self.params[name], state["metrics"][name], round, k, final
            )
            new_metrics[name] = entry
            results[name] = result
        extra = []
        if self.ignored:
            extra.append(f"not judged (kind value): {', '.join(self.ignored)}")
        judgement = combine(results, final=final, round=k, ignored=self.ignored, reasons=extra)
        return {"judge": self.name, "round": k, "metrics": new_metrics}, judgement

    # ------------------------------------------------------------------ one metric

    def _update_metric(
        self,
        params: MetricParameters,
        old: Mapping[str, Any],
        round: RoundData,
        k: int,
        final: bool,
    ) -> tuple[dict[str, Any], MetricResult]:
        entry: dict[str, Any] = dict(old)
        entry["tracks"] = list(old["tracks"])
        canary = None if round.error else round.canary.get(params.name)
        baseline = None if round.error else round.baseline.get(params.name)
        evidence: dict[str, Any] = {"round": k}
        note: str | None = None
        tables: list[tuple[int, int, int, int]] | None = None

        if round.error:
            note = f"round error, no evidence: {round.error}"
        elif params.kind is MetricKind.COUNTS:
            if isinstance(canary, Counts) and isinstance(baseline, Counts):
                tables = [(canary.failed, canary.total, baseline.failed, baseline.total)]
            elif canary is not None or baseline is not None:
                if not (canary is None or isinstance(canary, Counts)) or not (
                    baseline is None or isinstance(baseline, Counts)
                ):
                    raise ValueError(f"metric {params.name!r}: expected counts observations")
                note = "no data in one arm, no evidence"
            else:
                note = "no data, no evidence"
        else:
            for obs in (canary, baseline):
                if obs is not None and not isinstance(obs, Histogram):
                    raise ValueError(f"metric {params.name!r}: expected histogram observations")
            if entry["bounds"] is None:
                if isinstance(baseline, Histogram) and baseline.total > 0:
                    bounds = choose_bounds(baseline, params.quantiles)
                    if bounds:
                        entry["bounds"] = bounds
                        entry["warmup_round"] = k
                        entry["tracks"] = [_new_track(params) for _ in bounds]
                        note = "warm-up: bounds " + ", ".join(_fmt_bound(b) for b in bounds)
                    else:
                        note = "warm-up: baseline data fall in one bucket, bounds not chosen yet"
                else:
                    note = "warm-up: waiting for baseline data"
            elif isinstance(canary, Histogram) and isinstance(baseline, Histogram):
                missing = [
                    b for b in entry["bounds"] if b not in canary.bounds or b not in baseline.bounds
                ]
                if missing:
                    note = (
                        f"bucket bound {_fmt_bound(missing[0])} chosen at warm-up is missing "
                        "from this round's buckets: no evidence"
                    )
                else:
                    tables = []
                    for b in entry["bounds"]:
                        c, bl = canary.exceeding(b), baseline.exceeding(b)
                        tables.append((c.failed, c.total, bl.failed, bl.total))
            else:
                note = "no data in one arm, no evidence" if canary or baseline else "no data"

        if tables is not None:
            entry["tracks"] = [
                self._update_track(params, track, table)
                for track, table in zip(entry["tracks"], tables, strict=True)
            ]
            entry["requests"] = int(old["requests"]) + tables[0][1]
            evidence["canary"] = [{"total": t[1], "failed": t[0]} for t in tables]
            evidence["baseline"] = [{"total": t[3], "failed": t[2]} for t in tables]
        if note:
            evidence["note"] = note

        stats, log_fail, log_pass = self._statistics(params, entry)
        evidence["log_e_fail"] = log_fail
        evidence["log_e_pass"] = log_pass
        if (
            entry["fail_round"] is None
            and log_fail is not None
            and log_fail >= params.log_fail_threshold
        ):
            entry["fail_round"] = k
        if (
            entry["pass_round"] is None
            and log_pass is not None
            and log_pass >= params.log_pass_threshold
            and entry["requests"] >= params.min_requests
        ):
            entry["pass_round"] = k

        if entry["fail_round"] is not None:
            verdict, at = Verdict.FAIL, entry["fail_round"]
        elif entry["pass_round"] is not None:
            verdict, at = Verdict.PASS, entry["pass_round"]
        elif final:
            verdict, at = Verdict.INCONCLUSIVE, k
        else:
            verdict, at = Verdict.RUNNING, None
        stats["fail_round"] = entry["fail_round"]
        stats["pass_round"] = entry["pass_round"]
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
        self, params: MetricParameters, old: Mapping[str, Any], table: tuple[int, int, int, int]
    ) -> dict[str, Any]:
        x, n, y, m = table
        track = dict(old)
        track["canary"] = [old["canary"][0] + n, old["canary"][1] + x]
        track["baseline"] = [old["baseline"][0] + m, old["baseline"][1] + y]
        if not informative(x, n, y, m):
            return track
        lik = round_loglik(
            x,
            n,
            y,
            m,
            params.log_psi,
            moments=self.dispersion_guard,
            moment_rows=params.ci_slice.stop,
        )
        loglik = np.asarray(old["loglik"]) + lik.loglik
        track["loglik"] = loglik.tolist()
        rounds = int(old["rounds"]) + 1
        track["rounds"] = rounds
        if self.dispersion_guard:
            ci = params.ci_slice
            var = lik.var[ci]
            # (x - mean)^2 / var where var > 0, else 0 (no division warnings to silence).
            resid = np.divide((x - lik.mean[ci]) ** 2, var, out=np.zeros_like(var), where=var > 0)
            q = np.asarray(old["dispersion"]) + resid
            track["dispersion"] = q.tolist()
        return track

    # ------------------------------------------------------------------ summaries

    def _statistics(
        self, params: MetricParameters, entry: Mapping[str, Any]
    ) -> tuple[dict[str, Any], float | None, float | None]:
        tracks = entry["tracks"]
        stats: dict[str, Any] = {
            "requests": entry["requests"],
            "min_requests": params.min_requests,
            "fail_threshold": params.n_judged / params.alpha_fail,
            "pass_threshold": 1.0 / params.alpha_pass,
            "tolerance": params.tolerance,
            "margin": params.margin,
        }
        if params.kind is MetricKind.HISTOGRAM:
            stats["bounds"] = entry["bounds"]
            stats["warmup_round"] = entry["warmup_round"]
        if not tracks:
            stats["e_fail"] = stats["e_pass"] = None
            return stats, None, None
        per_track = []
        fails, passes = [], []
        for track in tracks:
            s = np.asarray(track["loglik"])
            phi = 1.0
            if self.dispersion_guard and track["rounds"] >= 2:  # phi is 1 before two rounds
                q = track["dispersion"][int(s[params.ci_slice].argmax())]
                phi = _dispersion_phi(q, track["rounds"])
                if phi != 1.0:  # s / 1.0 is s
                    s = s / phi
            log_fail = _logmeanexp(s[params.fail_slice]) - float(s[params.i_tol])
            log_pass = _logmeanexp(s[params.pass_slice]) - float(s[params.i_margin])
            if self.dispersion_guard and track["rounds"] < GUARD_MIN_ROUNDS:
                # Shrinking an e-value keeps it valid: min(e, 1) until dispersion is seen.
                log_fail, log_pass = min(log_fail, 0.0), min(log_pass, 0.0)
            fails.append(log_fail)
            passes.append(log_pass)
            low, high, estimate = _interval(params, s) if self.explain else (None, None, None)
            per_track.append(
                {
                    "canary": {"total": track["canary"][0], "failed": track["canary"][1]},
                    "baseline": {"total": track["baseline"][0], "failed": track["baseline"][1]},
                    "rounds_with_evidence": track["rounds"],
                    "e_fail": _safe_exp(log_fail),
                    "e_pass": _safe_exp(log_pass),
                    "odds_ratio": estimate,
                    "ci_low": low,
                    "ci_high": high,
                    "phi": phi,
                }
            )
        # The mean of one e-value is itself (log(exp(0) / 1) = 0).
        log_fail = fails[0] + 0.0 if len(fails) == 1 else _logmeanexp(np.array(fails))
        log_pass = float(min(passes))
        stats["e_fail"] = _safe_exp(log_fail)
        stats["e_pass"] = _safe_exp(log_pass)
        stats["confidence"] = CONFIDENCE
        if params.kind is MetricKind.COUNTS:
            stats.update({k: v for k, v in per_track[0].items()})
        else:
            for bound, item in zip(entry["bounds"], per_track, strict=True):
                item["bound"] = bound
            stats["per_bound"] = per_track
        return stats, log_fail, log_pass

    def _reasons(
        self,
        params: MetricParameters,
        entry: Mapping[str, Any],
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
                f"baseline ({CONFIDENCE:.0%} time-uniform); "
                f"{stats['canary']['failed']}/{stats['canary']['total']} canary vs "
                f"{stats['baseline']['failed']}/{stats['baseline']['total']} baseline failed"
            )
        elif params.kind is MetricKind.HISTOGRAM and entry["bounds"]:
            for item in stats.get("per_bound", []):
                reasons.append(
                    f"odds of slower than {_fmt_bound(item['bound'])}: "
                    f"{_fmt_interval(item['ci_low'], item['ci_high'])} baseline "
                    f"({CONFIDENCE:.0%} time-uniform)"
                )
        if stats.get("e_fail") is not None:
            reasons.append(
                f"fail evidence {_fmt_e(stats['e_fail'])} (fails at {_fmt_e(fail_need)}), "
                f"pass evidence {_fmt_e(stats['e_pass'])} (passes at {_fmt_e(pass_need)})"
            )
        if verdict is Verdict.FAIL:
            reasons.insert(
                0,
                f"FAIL at round {entry['fail_round']}: canary odds above the tolerance "
                f"({params.tolerance:g}x baseline)",
            )
        elif verdict is Verdict.PASS:
            reasons.insert(
                0,
                f"PASS at round {entry['pass_round']}: canary odds below the margin "
                f"({params.margin:g}x baseline)",
            )
        elif verdict is Verdict.INCONCLUSIVE:
            reasons.insert(0, "budget reached without enough evidence either way")
        if (
            verdict is not Verdict.FAIL
            and stats.get("e_pass") is not None
            and stats["e_pass"] >= pass_need
            and entry["requests"] < params.min_requests
        ):
            reasons.append(
                f"pass evidence reached but only {entry['requests']} of "
                f"{params.min_requests} canary requests (min_requests)"
            )
        if any(float(t.get("phi", 1.0)) > 1.0 for t in stats.get("per_bound", [stats])):
            reasons.append("over-dispersion between rounds detected: evidence tempered")
        if note:
            reasons.append(note)
        return reasons


# ---------------------------------------------------------------------- helpers


def _dispersion_phi(q: float, rounds: int) -> float:
    """Upper 95% bound of the dispersion, Q / chi2_0.05(df), when Q exceeds the chi-square
    1% critical value (df = rounds - 1), else 1."""
    if rounds < 2:
        return 1.0
    df = rounds - 1
    if df <= len(_CHI2_CRITICAL):
        critical = float(_CHI2_CRITICAL[df - 1])
        lower = float(_CHI2_LOWER[df - 1])
    else:  # Wilson-Hilferty approximation beyond the table
        a = 2.0 / (9.0 * df)
        critical = df * (1.0 - a + 2.3263 * math.sqrt(a)) ** 3
        lower = df * (1.0 - a - 1.6449 * math.sqrt(a)) ** 3
    if q <= critical:
        return 1.0
    return max(1.0, q / lower)


def _interval(params: MetricParameters, s: np.ndarray) -> tuple[float | None, float | None, float]:
    """Time-uniform CI (grid psi0 not rejected by the two-sided mixture) and the MLE.

    A low end of 0.0 means below the grid (0.1), a high end of None above it (10);
    (None, None) means every grid psi0 is rejected: no constant odds ratio fits.
    """
    ci = s[params.ci_slice]
    log_e = _logmeanexp_rows(ci[params.ci_alternatives]) - ci
    kept = np.nonzero(log_e < params.log_ci_threshold)[0]
    estimate = float(params.ci_psi[int(np.argmax(ci))])
    if len(kept) == 0:
        return None, None, estimate
    low = float(params.ci_psi[kept[0]]) if kept[0] > 0 else 0.0
    last = len(ci) - 1
    high = float(params.ci_psi[kept[-1]]) if kept[-1] < last else None
    return low, high, estimate


def _safe_exp(value: float) -> float:
    return math.exp(min(value, 700.0))


def _fmt_bound(bound: float) -> str:
    return f"{bound:g} ms"


def _fmt_e(value: float) -> str:
    if value >= 1e6 or value < 1e-3:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _fmt_interval(low: float | None, high: float | None) -> str:
    if low is None:
        return "(no constant odds ratio fits)"
    lo = "<0.1" if low == 0.0 else f"{low:.2g}"
    hi = ">10" if high is None else f"{high:.2g}"
    return f"{lo}–{hi}x"
