"""Evidence that does not rest on independent requests: round contrasts, A/A-scaled.

The request-level e-process (`canary.judge.hypergeometric`) is exact when, within a
round, which arm a request lands on is independent of whether it fails. Real traffic
breaks this in two ways: (a) an arm's error rate varies from round to round (all of
its pods together: load, dependencies, minutes), and (b) pods differ, persistently
(a bad node, a cold cache): the canary's few pods may be worse than the baseline's
by chance. This module scores each round by one number and scales it with the
variation the *baseline's own* data show — an A/A comparison:

For a round with canary x failures of n requests and baseline y of m, let q be the
round's baseline rate (y + 1/2)/(m + 1), p the baseline's pooled rate over the
rounds so far, q_t and p_t those with their odds multiplied by `tolerance`, and

    c = x - n q_t                           (excess canary failures)
    u = n p_t                               (c's mean per unit relative increase eta)
    v = n p_t (1 - p_t) + n^2 p (1 - p) / m + 2 n^2 p^2 kappa^2

v is c's variance under the null: binomial parts plus round-level variation (a) of
relative size kappa (coefficient of variation of an arm's rate between rounds; both
arms vary). The round's score is z = c / sqrt(v), its unit effect d = u / sqrt(v),
and its evidence for eta the Student-t (`DF` degrees of freedom) likelihood ratio
f(z - eta d) / f(z), held at its peak beyond it (`round_log_ratios`). A t ratio
gives one extreme round bounded evidence, so skewed or bursty rates (Beta-distributed
rates, a bursty pod) do not pile up as proof; under a Gaussian score of the right
scale its expectation is at most 1 (tests check it by quadrature).

Pod-level variation (b) is a persistent relative offset w of the canary's pods
against the baseline's, of variance tau^2 = rho^2 (1/J_c + 1/J_b) for J_c canary
and J_b baseline pods (rho: the relative spread of pod error rates, from the
baseline's pods, each pod's counts summed over the rounds). For Gaussian scores,
c_k = u_k (eta + w) + e_k with w ~ N(0, tau^2) integrated out gives exactly, with
a = sum d_k^2, b = sum d_k z_k,

    G(eta) = (eta b - eta^2 a / 2) / (1 + a tau^2)

(a random-effects likelihood ratio: however many rounds, it cannot prove more about
an offset than the pods' spread allows). A round's evidence for eta is the smaller
of the two: min(exp(L), exp(G)) is below each e-value, so it is valid when either
model holds — skewed round-to-round variation (L) or a persistent pod offset (G).

With per-pod data and at least `TRIM_PODS` canary pods, each round's canary pod
furthest above what the other canary pods predict plus slack counts at most that
(`without_worst_pod`): a version's regression shows in every pod and is kept, a
bursting pod stands out and is held back (the request-level process uses every
request).

kappa and rho come from the baseline only (its round-to-round and pod-to-pod
spread), never from the canary's failures: more canary failures always mean more
evidence (the score is monotone in x). Both are upper bounds. kappa is the upper
quantile (level `ROUND_LEVEL`) of its posterior given the baseline's rounds
(Pearson's statistic, rounds - 1 degrees of freedom) with the metric's `robust_cv`
as a scaled inverse chi-square prior worth `PRIOR_DF` rounds: exactly `robust_cv`
at the first round, then moving smoothly to what the rounds show, however large
(`BaselineSpread.kappa2`). rho is a chi-square confidence bound (level
`SPREAD_LEVEL`) between pods with pods - 1 degrees of freedom on the pooled pod
counts (so with pods that do not differ it falls as requests accumulate), at most
`robust_cv`.
The t model, the plug-in scales and the prior make this validity approximate:
it is *measured* on the benchmark's heterogeneous nulls (docs/judge.md), not proved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import chi2, norm

from canary.judge.states import SpreadSums

__all__ = [
    "DF",
    "PRIOR_DF",
    "ROUND_LEVEL",
    "SPREAD_LEVEL",
    "TRIM_PODS",
    "BaselineSpread",
    "log_evidence",
    "round_contrast",
    "round_log_ratios",
    "severe_etas",
    "start_weight",
    "without_worst_pod",
]

#: Upper confidence level of the baseline's pod spread (one-sided).
SPREAD_LEVEL = 0.8
#: Upper posterior quantile of the baseline's round-to-round spread.
ROUND_LEVEL = 0.9
#: Baseline rounds the prior round-to-round spread (`robust_cv`) counts for.
PRIOR_DF = 1
_DFS = np.arange(1, 2001)
_LOWER = {
    level: chi2.ppf(1.0 - level, _DFS)  # index df - 1
    for level in (SPREAD_LEVEL, ROUND_LEVEL)
}


def _chi2_lower(df: int, level: float = SPREAD_LEVEL) -> float:
    """The (1 - level) quantile of chi-square with df degrees of freedom."""
    table = _LOWER[level]
    if df <= len(table):
        return float(table[df - 1])
    a = 2.0 / (9.0 * df)  # Wilson-Hilferty beyond the table
    return df * (1.0 - a - float(norm.ppf(level)) * math.sqrt(a)) ** 3


def start_weight(k: int) -> float:
    """Weight of the e-process started at round k: 1/(k(k+1)), summing to 1 over k >= 1."""
    return 1.0 / (k * (k + 1))


class BaselineSpread:
    """Running sums of the baseline's spread between rounds and between pods.

    Stored as `SpreadSums` (`sums()`; read back with `BaselineSpread(sums)`). Pods are
    kept by name: each pod's events and requests summed over the rounds. A state stored
    before that carries per-round sums instead (`SpreadSums.legacy`): they are kept,
    and the pod spread is at least what they show, so an analysis running across the
    upgrade keeps allowing for it.
    """

    __slots__ = ("_kappa2", "legacy", "pods", "rounds", "s_m", "s_m2", "s_y", "s_yy")

    def __init__(self, data: SpreadSums | Mapping[str, Any] | None = None) -> None:
        if data is None:
            data = SpreadSums()
        elif not isinstance(data, SpreadSums):
            data = SpreadSums.from_json(data, "spread")
        self.rounds = data.rounds
        self.s_m = data.s_m
        self.s_m2 = data.s_m2
        self.s_y = data.s_y
        self.s_yy = data.s_yy  # sum y^2 / m
        self.pods: dict[str, list[int]] = {name: list(v) for name, v in (data.pods or {}).items()}
        self.legacy: Mapping[str, float] = data.legacy
        self._kappa2: tuple[float, float] | None = None  # (prior, kappa2) until the next add

    def sums(self) -> SpreadSums:
        """The sums as the judge state keeps them."""
        return SpreadSums(
            pods={name: (v[0], v[1]) for name, v in self.pods.items()},
            rounds=self.rounds,
            s_m=self.s_m,
            s_m2=self.s_m2,
            s_y=self.s_y,
            s_yy=self.s_yy,
            legacy=self.legacy,
        )

    def to_json(self) -> dict[str, Any]:
        return self.sums().to_json()

    def add(self, y: int, m: int, pods: Mapping[str, tuple[int, int]] | None = None) -> None:
        """Add one round of the baseline: y events of m, optionally per pod name (y_i, m_i)."""
        if m <= 0:
            return
        self._kappa2 = None
        self.rounds += 1
        self.s_m += m
        self.s_m2 += float(m) * m
        self.s_y += y
        self.s_yy += y * y / m
        for name, (yi, mi) in (pods or {}).items():
            if mi > 0:
                total = self.pods.setdefault(name, [0, 0])
                total[0] += int(yi)
                total[1] += int(mi)

    @property
    def pod_count(self) -> int:
        """Baseline pods seen with requests."""
        seen = sum(1 for _, mi in self.pods.values() if mi > 0)
        return max(seen, int(self.legacy.get("pod_max", 0)))

    def rate(self) -> float:
        """The baseline's pooled rate over the rounds so far (1/2-corrected)."""
        return self._rate()

    def _rate(self) -> float:
        return (self.s_y + 0.5) / (self.s_m + 1.0)

    def kappa2(self, prior: float) -> float:
        """Relative round-to-round variance kappa^2 of an arm's rate: the upper quantile
        (level `ROUND_LEVEL`) of its posterior given the baseline's rounds, with `prior`
        (the metric's `robust_cv`) counting as `PRIOR_DF` rounds.

        Pearson's statistic between the baseline's R rounds is taken as X^2 = s^2
        chi^2_{R-1}, s^2 = 1 + c kappa^2 (c = p^2 neff / (p (1 - p) (R - 1)): the
        variation above binomial noise). A scaled inverse chi-square prior on s^2 with
        nu0 = `PRIOR_DF` degrees of freedom gives the posterior scaled inverse chi-square
        with nu0 + R - 1 degrees of freedom and sum nu0 s0^2 + X^2 (Gelman et al.,
        Bayesian Data Analysis, 3rd ed., sec. 2.6: normal variance, known mean); its
        upper quantile is (nu0 s0^2 + X^2) / chi^2_{nu0+R-1, 1-level}. nu0 s0^2 is set
        so that the prior's own quantile is `prior`: at one round kappa = prior exactly,
        and the baseline's rounds take over smoothly, as large as they show."""
        if self._kappa2 is not None and self._kappa2[0] == prior:
            return self._kappa2[1]
        value = self._kappa2_of(prior)
        self._kappa2 = (prior, value)
        return value

    def _kappa2_of(self, prior: float) -> float:
        if self.rounds < 2:
            return prior * prior
        p = self._rate()
        pq = p * (1.0 - p)
        df = self.rounds - 1
        neff = self.s_m - self.s_m2 / self.s_m
        if neff <= 0:
            return prior * prior
        x2 = max(self.s_yy - self.s_y * self.s_y / self.s_m, 0.0) / pq
        c = p * p * neff / (pq * df)  # E[X^2] / df = 1 + c kappa^2
        pseudo = _chi2_lower(PRIOR_DF, ROUND_LEVEL) * (1.0 + c * prior * prior)
        upper = (x2 + pseudo) / _chi2_lower(df + PRIOR_DF, ROUND_LEVEL)
        return max(upper - 1.0, 0.0) / c

    def rho2(self, cap: float = math.inf) -> float:
        """Relative pod-to-pod variance of the rate (0 without pods): an upper confidence
        bound (level `SPREAD_LEVEL`) from Pearson's statistic between the baseline's pods,
        each pod's counts summed over the rounds (J pods: J - 1 degrees of freedom), at
        most cap^2. Binomial noise has the same J - 1 degrees of freedom however many
        rounds are pooled, so without pod differences the bound falls as 1/requests.
        At least what a state's legacy sums show (`_legacy_rho2`)."""
        return max(self._pods_rho2(cap), self._legacy_rho2(cap))

    def _legacy_rho2(self, cap: float) -> float:
        """The bound from per-round sums, as states stored before `pods` computed it:
        pod effects with pod_max - 1 degrees of freedom however many rounds were pooled."""
        df = int(self.legacy.get("pod_df", 0))
        neff = float(self.legacy.get("pod_neff", 0.0))
        if df <= 0 or neff <= 0:
            return 0.0
        p = self._rate()
        pq = p * (1.0 - p)
        x2 = max(float(self.legacy.get("pod_ss", 0.0)), 0.0) / pq
        d = max(1, min(df, int(self.legacy.get("pod_max", 0)) - 1))
        upper = x2 * d / _chi2_lower(d)
        return min(cap * cap, max(upper - df, 0.0) * pq / (p * p * neff))

    def _pods_rho2(self, cap: float) -> float:
        pods = [(yi, mi) for yi, mi in self.pods.values() if mi > 0]
        if len(pods) < 2:
            return 0.0
        total = float(sum(mi for _, mi in pods))
        events = float(sum(yi for yi, _ in pods))
        p = (events + 0.5) / (total + 1.0)
        pq = p * (1.0 - p)
        df = len(pods) - 1
        x2 = max(sum(yi * yi / mi for yi, mi in pods) - events * events / total, 0.0) / pq
        upper = x2 * df / _chi2_lower(df)
        neff = total - sum(float(mi) * mi for _, mi in pods) / total
        if neff <= 0:
            return 0.0
        return min(cap * cap, max(upper - df, 0.0) * pq / (p * p * neff))


#: Degrees of freedom of a round's Student-t likelihood ratio.
DF = 5.0


def severe_etas(p_bar: float, tolerance: float) -> tuple[float, float]:
    """Two severe alternatives of a round, from the baseline alone (so predictable):
    the canary failing every request, eta_dead = (1 - p_t) / p_t, and the geometric
    mean of 10 and eta_dead (most requests failing)."""
    p_t = _at_tolerance(p_bar, tolerance)
    dead = max((1.0 - p_t) / p_t, 10.0)
    return math.sqrt(10.0 * dead), dead


#: Canary pods (with requests) from which the robust contrast leaves out the worst one.
TRIM_PODS = 3


def _at_tolerance(rate: float, tolerance: float) -> float:
    """The rate whose odds are `tolerance` times those of `rate`."""
    return tolerance * rate / (1.0 - rate + tolerance * rate)


def without_worst_pod(x: int, n: int, pods: Sequence[tuple[int, int]]) -> tuple[float, int]:
    """The canary's failures with an outlying pod held to what the other pods predict.

    When the canary has at least `TRIM_PODS` pods with requests, the largest excess of
    a pod over its limit, max_i max(x_i - limit_i, 0), is left out: limit_i = mu_i +
    3 sqrt(mu_i) + 3, mu_i = pod i's requests x the other canary pods' rate (a
    Poisson-style upper limit with slack). A version's regression shows in every
    canary pod, so no pod stands out and nothing is lost; a bad pod (a burst, a bad
    node) stands out and loses its excess. Monotone in severity: one more failure in
    pod j adds one to x and at most one to pod j's excess, and raises every other
    pod's limit, so the result never falls.
    """
    pods = [(xi, ni) for xi, ni in pods if ni > 0]
    if len(pods) < TRIM_PODS:
        return float(x), n
    total_x = sum(xi for xi, _ in pods)
    total_n = sum(ni for _, ni in pods)
    excess = 0.0
    for xi, ni in pods:
        mu = ni * (total_x - xi) / (total_n - ni)
        excess = max(excess, xi - (mu + 3.0 * math.sqrt(mu) + 3.0))
    return float(x) - excess, n


def round_contrast(
    x: float,
    n: int,
    y: int,
    m: int,
    tolerance: float,
    kappa2: float,
    p_bar: float,
) -> tuple[float, float] | None:
    """(z, d) of one round: the standardized contrast c / sqrt(v) and u / sqrt(v).

    p_bar is the baseline's pooled rate over the rounds so far (the null's mean rate);
    q, this round's baseline rate, is what the canary is compared with (so changes
    both arms share cancel). None without requests in both arms.
    """
    if n <= 0 or m <= 0:
        return None
    q_t = _at_tolerance((y + 0.5) / (m + 1.0), tolerance)
    p_t = _at_tolerance(p_bar, tolerance)
    c = x - n * q_t
    u = n * p_t
    v = n * p_t * (1.0 - p_t) + n * n * p_bar * (1.0 - p_bar) / m
    v += 2.0 * n * n * p_bar**2 * kappa2
    sd = math.sqrt(v)
    return c / sd, u / sd


def round_log_ratios(z: float, d: float, etas: np.ndarray, df: float = DF) -> np.ndarray:
    """log f(z' - delta) - log f(z') for Student's t density f (`df` degrees of freedom),
    delta = eta d and z' = min(z, z*), z* = (delta + sqrt(delta^2 + 4 df)) / 2.

    Under the null z has mean <= 0 and scale about 1; a t likelihood ratio gives one
    extreme round bounded evidence, so skewed or heavy-tailed round-to-round variation
    (a bursty pod, Beta-distributed rates) does not pile up as proof. The ratio peaks
    at z*; holding it there beyond keeps the score monotone (more canary failures never
    give less evidence) at the price of exactness under a t null (the benchmark
    measures it).
    """
    delta = etas * d
    peak = (delta + np.sqrt(delta * delta + 4.0 * df)) / 2.0
    zz = np.minimum(z, peak)
    shifted = zz - delta
    return -(df + 1.0) / 2.0 * (np.log1p(shifted * shifted / df) - np.log1p(zz * zz / df))


def log_evidence(
    logs: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    log_w: np.ndarray,
    etas: np.ndarray,
    tau2: float,
) -> float:
    """log sum_s w_s mean_eta min(exp(L_s(eta)), exp(G_s(eta))).

    L_s: the summed Student-t round log-ratios since start s (one row per start),
    valid under skewed round-to-round variation; G_s = (eta b_s - eta^2 a_s / 2) /
    (1 + a_s tau^2): the Gaussian likelihood ratio with a persistent pod offset of
    relative variance tau^2 integrated out, valid under pod-level variation. The
    smaller of two e-values is below each, so it is valid when either model holds.
    """
    if logs.size == 0:
        return -math.inf
    # One array, updated in place, in the order of the formula's operations.
    values = b[:, None] * etas
    values -= a[:, None] * (etas * etas) / 2.0
    if tau2 != 0.0:  # else 1 / (1 + a tau^2) is 1 for every start
        values *= (1.0 / (1.0 + a * tau2))[:, None]
    np.minimum(logs, values, out=values)
    values += log_w[:, None]
    values -= math.log(logs.shape[1])
    top = float(np.maximum.reduce(values, axis=None))
    values -= top
    return top + math.log(float(np.add.reduce(np.exp(values, out=values), axis=None)))
