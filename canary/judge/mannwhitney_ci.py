"""Mann-Whitney confidence interval of a location shift, as R's `wilcox.test` computes it.

R's call ``wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE)`` inverts the
rank-sum test with its normal approximation. For a shift d, rank ``c(x - d, y)``
(average ranks for ties) and let R_x(d) be the rank sum of the shifted x:

    dz(d)    = R_x(d) - n(n+1)/2 - n m / 2                    (U statistic minus its mean)
    sigma(d) = sqrt(n m / 12 * ((n + m + 1) - sum(t^3 - t) / ((n + m)(n + m - 1))))
    W(d)     = (dz(d) - sign(dz(d)) / 2) / sigma(d)           (t: sizes of tie groups)

W decreases in d. The two-sided 1 - alpha interval is [l, u] with W(l) = z_{1-alpha/2}
and W(u) = z_{alpha/2}, each found by Brent's root finder (R's `uniroot`, tolerance
1e-4) on [min(x) - max(y), max(x) - min(y)]; when W at an end of that range is already
past the quantile, R returns the end itself (and warns "requested conf.level not
achievable"). The estimate is the root of W(d) = 0 computed *without* the continuity
correction (R sets ``correct <- FALSE`` before it) — for two samples this is not, in
general, the median of the pairwise differences (the Hodges-Lehmann estimator) that
``exact=TRUE`` reports.

References: R `stats:::wilcox.test.default` (R 4.2); Hollander & Wolfe, *Nonparametric
Statistical Methods* (1973), §4.3; Bauer (1972), JASA 67, 687-690. The root finder is
Brent's algorithm as in R's `R_zeroin2` (Brent, *Algorithms for Minimization without
Derivatives*, 1973, ch. 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = ["RankSumZ", "ShiftInterval", "rank_sum_z", "shift_interval", "zeroin"]

_EPSILON = float(np.finfo(float).eps)


def zeroin(
    f: Callable[[float], float],
    lower: float,
    upper: float,
    f_lower: float,
    f_upper: float,
    *,
    tol: float = 1e-4,
    maxiter: int = 1000,
) -> float:
    """A root of `f` in [lower, upper] by Brent's method, step for step as R's `uniroot`.

    `f_lower` and `f_upper` are f at the ends and must differ in sign (or be zero).
    Matching R's iteration matters here: W is a step function, so any point of a
    flat stretch is "a root" and only the same iteration lands on the same point.
    """
    a, b, fa, fb = lower, upper, f_lower, f_upper
    c, fc = a, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(maxiter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            # Swap so that b is the best approximation.
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2.0 * _EPSILON * abs(b) + tol / 2.0
        new_step = (c - b) / 2.0
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                # Two distinct points: linear interpolation (secant).
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                # Inverse quadratic interpolation.
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2.0) and p < abs(prev_step * q / 2.0):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def _tie_sum(sorted_values: np.ndarray) -> float:
    """sum(t^3 - t) over the tie groups of an ascending array."""
    edges = np.empty(sorted_values.size + 1, dtype=bool)
    edges[0] = edges[-1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=edges[1:-1])
    ties = np.diff(np.flatnonzero(edges)).astype(float)
    return float(np.sum(ties**3 - ties))


class RankSumZ:
    """W(d) for fixed samples x and y, evaluated many times by the root finder.

    The rank sum comes from the identity R_x = n(n+1)/2 + U with
    U = #{x_i - d > y_j} + #{x_i - d = y_j}/2 (average ranks give exactly this; U is a
    multiple of 1/2, so it is exact in floating point), and the tie groups of
    c(x - d, y) are those of x and y merged where x_i - d equals some y_j — no ranking
    per evaluation. Results equal R's to the last bit on the vectors in the tests.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.n, self.m = int(x.size), int(y.size)
        self.values, counts = np.unique(x, return_counts=True)
        self.counts = counts.astype(float)
        self.y = np.sort(y)
        self.base_ties = _tie_sum(self.values.repeat(counts)) + _tie_sum(self.y)
        self.x = x

    def u_and_ties(self, shift: float) -> tuple[float, float]:
        """U of x - shift against y, and sum(t^3 - t) over the tie groups of both."""
        shifted = self.values - shift
        below = np.searchsorted(self.y, shifted, side="left")
        equal = np.searchsorted(self.y, shifted, side="right") - below
        a = self.counts
        u = float(np.dot(a, below)) + 0.5 * float(np.dot(a, equal))
        if shifted.size > 1 and np.any(shifted[1:] == shifted[:-1]):
            # Rounding merged distinct x values: count the tie groups directly.
            return u, _tie_sum(np.sort(np.concatenate((self.x - shift, self.y))))
        hit = equal > 0
        if not hit.any():
            return u, self.base_ties
        a, b = a[hit], equal[hit].astype(float)
        merged = (a + b) ** 3 - (a + b) - (a**3 - a) - (b**3 - b)
        return u, self.base_ties + float(merged.sum())

    def __call__(self, shift: float, *, correct: bool = True) -> float:
        n, m = self.n, self.m
        u, tie_sum = self.u_and_ties(shift)
        dz = u - n * m / 2.0
        sigma = math.sqrt((n * m / 12.0) * ((n + m + 1) - tie_sum / ((n + m) * (n + m - 1))))
        if sigma == 0.0:
            raise ValueError("cannot compute a confidence interval when all observations are tied")
        correction = math.copysign(0.5, dz) if (correct and dz != 0.0) else 0.0
        return (dz - correction) / sigma


def rank_sum_z(x: np.ndarray, y: np.ndarray, shift: float, *, correct: bool = True) -> float:
    """W(shift): the normal-approximation z of the rank-sum test of x - shift against y.

    Formula in the module docstring. Raises ValueError when every value is tied
    (sigma = 0), where R warns and the interval is undefined.
    """
    return RankSumZ(np.asarray(x, dtype=float), np.asarray(y, dtype=float))(shift, correct=correct)


@dataclass(frozen=True, slots=True)
class ShiftInterval:
    """Confidence interval and estimate of the shift x - y (R's `conf.int` and `estimate`).

    `lower_achieved` / `upper_achieved` are False where R would warn "requested
    conf.level not achievable" (the bound is then the end of the data range).
    `p_value` is the two-sided, continuity-corrected normal p-value of shift 0 and
    `u_statistic` the Mann-Whitney U of x (R's W statistic).
    """

    lower: float
    upper: float
    estimate: float
    confidence: float
    p_value: float
    u_statistic: float
    lower_achieved: bool = True
    upper_achieved: bool = True


def shift_interval(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    *,
    tol: float = 1e-4,
) -> ShiftInterval:
    """R's ``wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE)`` interval.

    `x` is the canary (experiment), `y` the baseline (control); the shift is x - y.
    Raises ValueError for an empty or non-finite sample, a confidence outside (0, 1),
    or when every observation is tied.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.size == 0 or ya.size == 0:
        raise ValueError("both samples need at least one value")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("samples must be finite (remove or replace NaN first)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    mumin = float(xa.min() - ya.max())
    mumax = float(xa.max() - ya.min())

    statistic = RankSumZ(xa, ya)

    def w(d: float) -> float:
        return statistic(d, correct=True)

    w_min, w_max = w(mumin), w(mumax)

    def root(zq: float) -> tuple[float, bool]:
        f_lower = w_min - zq
        if f_lower <= 0:
            return mumin, False
        f_upper = w_max - zq
        if f_upper >= 0:
            return mumax, False
        return zeroin(lambda d: w(d) - zq, mumin, mumax, f_lower, f_upper, tol=tol), True

    lower, lower_ok = root(-float(ndtri(alpha / 2.0)))
    upper, upper_ok = root(float(ndtri(alpha / 2.0)))

    def w0(d: float) -> float:
        return statistic(d, correct=False)

    # R's uniroot refuses lower == upper; both arms constant leave one possible shift.
    estimate = mumin
    if mumin < mumax:
        estimate = zeroin(w0, mumin, mumax, w0(mumin), w0(mumax), tol=tol)

    z0 = w(0.0)
    p_value = float(min(1.0, 2.0 * ndtr(-abs(z0))))
    u = statistic.u_and_ties(0.0)[0]
    return ShiftInterval(
        lower=float(lower),
        upper=float(upper),
        estimate=float(estimate),
        confidence=confidence,
        p_value=p_value,
        u_statistic=u,
        lower_achieved=lower_ok,
        upper_achieved=upper_ok,
    )
