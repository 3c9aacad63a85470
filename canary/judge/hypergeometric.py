"""Fisher's noncentral hypergeometric likelihood of one 2x2 table, on a grid of odds ratios.

A round gives canary x failures of n requests and baseline y of m; e = x + y. Given
the margins, x follows Fisher's noncentral hypergeometric distribution with odds
ratio psi (canary odds / baseline odds):

    P(x | n, m, e; psi) = w_x psi^x / sum_j w_j psi^j,   w_j = C(n, j) C(m, e - j),

with j from max(0, e - m) to min(n, e) (Fisher 1935; McCullagh & Nelder, Generalized
Linear Models, 2nd ed., §7.3; Harkness, Ann. Math. Statist. 36 (1965) 938-945).
The likelihood ratio against psi0 is therefore

    LR(psi; psi0) = (psi / psi0)^x * sum_j w_j psi0^j / sum_j w_j psi^j.

`round_loglik` returns ell(psi) = log LR(psi; 1) for every psi of a grid, so that
log LR(psi; psi0) = ell(psi) - ell(psi0): summing ell over rounds gives the log of
any product of per-round likelihood ratios with two lookups.

Everything is in log space: log w_j uses `gammaln`, the sums `logsumexp` over j.
The constant log n! + log m! cancels in every ratio and is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy.special import gammaln

__all__ = ["RoundLikelihood", "informative", "round_loglik"]


def informative(x: int, n: int, y: int, m: int) -> bool:
    """Whether a table carries evidence about psi: both arms have requests and the
    pooled failures are neither 0 nor all requests (else ell(psi) = 0 for all psi)."""
    e = x + y
    return n > 0 and m > 0 and 0 < e < n + m


@dataclass(frozen=True, slots=True)
class RoundLikelihood:
    """ell(psi) on the grid plus the mean and variance of x under each grid psi."""

    loglik: np.ndarray  # log LR(psi; 1) per grid point
    mean: np.ndarray  # E_psi[x | margins]
    var: np.ndarray  # Var_psi[x | margins]


def _log_weights(n: int, m: int, e: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """j = lo..hi and log w_j up to an additive constant (which cancels in every ratio).

    log w_lo from `gammaln`, the rest by the term ratio
    w_{j+1} / w_j = (n - j)(e - j) / ((j + 1)(m - e + j + 1)), accumulated in log space.
    """
    j = np.arange(lo, hi + 1, dtype=np.float64)
    first = -(gammaln(lo + 1) + gammaln(n - lo + 1) + gammaln(e - lo + 1) + gammaln(m - e + lo + 1))
    logw = np.empty_like(j)
    logw[0] = first
    if len(j) > 1:
        head = j[:-1]
        steps = np.log((n - head) * (e - head)) - np.log((head + 1) * (m - e + head + 1))
        np.cumsum(steps, out=logw[1:])
        logw[1:] += first
    return j, logw


#: Windows reach this many approximate standard deviations either side of the mean.
_WINDOW_SD = 8.0
#: A window is accepted when its edge terms are this far (in log) below the row maximum.
_EDGE_DROP = 30.0


def _windows(
    n: int, m: int, e: int, psi: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per psi, a j-range around the approximate mean holding all but ~e^-30 of the sum.

    Approximate mean: the root of mu (m - e + mu) = psi (n - mu)(e - mu) (Cornfield
    1956); variance: 1 / (1/mu + 1/(n-mu) + 1/(e-mu) + 1/(m-e+mu)) (Stevens 1951).
    """
    b = m - e + psi * (n + e)
    disc = np.maximum(b * b + 4.0 * (1.0 - psi) * psi * n * e, 0.0)
    mu = 2.0 * psi * n * e / (b + np.sqrt(disc))
    mu = np.clip(mu, lo, hi)
    with np.errstate(divide="ignore"):
        inv = 1 / np.maximum(mu, 0.5) + 1 / np.maximum(n - mu, 0.5)
        inv += 1 / np.maximum(e - mu, 0.5) + 1 / np.maximum(m - e + mu, 0.5)
    half = np.ceil(_WINDOW_SD * np.sqrt(1.0 / inv)) + 6
    wlo = np.clip(np.floor(mu - half), lo, hi).astype(np.int64)
    whi = np.clip(np.ceil(mu + half), lo, hi).astype(np.int64)
    return wlo, whi


def _log_terms(
    x: int, n: int, y: int, m: int, log_psi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(terms, start, offset) with log w_j + j log psi_p = terms[p, i] + offset[p] for
    j = start[p] + i: each row covers the j-window that holds its psi's mass."""
    e = x + y
    lo, hi = max(0, e - m), min(n, e)
    size = hi - lo + 1
    if size > 256:
        wlo, whi = _windows(n, m, e, np.exp(log_psi), lo, hi)
        width = int((whi - wlo).max()) + 1
        if 2 * width < size:
            # Same width for every row (shifted left at the top end), so no masking.
            start = np.minimum(wlo, hi - width + 1)
            ulo, uhi = int(start.min()), int(start.max()) + width - 1
            _, logw_u = _log_weights(n, m, e, ulo, uhi)
            windows = as_strided(
                logw_u, shape=(len(logw_u) - width + 1, width), strides=logw_u.strides * 2
            )
            terms = windows[start - ulo]  # a copy, one row per psi
            terms += np.outer(log_psi, np.arange(width, dtype=np.float64))
            row_max = terms.max(axis=1)
            ok_left = (start == lo) | (terms[:, 0] < row_max - _EDGE_DROP)
            ok_right = (start + width - 1 == hi) | (terms[:, -1] < row_max - _EDGE_DROP)
            if bool(np.all(ok_left & ok_right)):
                return terms, start, start * log_psi
    j, logw = _log_weights(n, m, e, lo, hi)
    terms = logw[None, :] + np.outer(log_psi, j - lo)
    start = np.full(len(log_psi), lo, dtype=np.int64)
    return terms, start, lo * log_psi


def round_loglik(
    x: int,
    n: int,
    y: int,
    m: int,
    log_psi: np.ndarray,
    *,
    moments: bool = False,
    moment_rows: int | None = None,
) -> RoundLikelihood:
    """ell(psi) = log LR(psi; 1) for one round's table, for every log psi in `log_psi`.

    Requires `informative(x, n, y, m)`. With `moments`, also the conditional mean and
    variance of x under each psi (for the over-dispersion guard) — only for the first
    `moment_rows` grid points when given; otherwise those are empty arrays. Each psi
    sums only over the j-window that holds its mass (checked: the window's edge terms
    are at least e^30 below its largest), so the cost stays O(len(log_psi) * sd) even
    for millions of requests.
    """
    grid = np.append(np.asarray(log_psi, dtype=np.float64), 0.0)  # last row: psi = 1
    terms, start, offset = _log_terms(x, n, y, m, grid)
    row_max = terms.max(axis=1)
    terms -= row_max[:, None]
    expo = np.exp(terms, out=terms)
    total = expo.sum(axis=1)
    log_z = offset + row_max + np.log(total)
    loglik = x * grid[:-1] - (log_z[:-1] - log_z[-1])
    if not moments:
        empty = np.empty(0)
        return RoundLikelihood(loglik=loglik, mean=empty, var=empty)
    rows = len(grid) - 1 if moment_rows is None else moment_rows
    # Offsets i within each row's window are small, so E[i^2] - E[i]^2 does not cancel.
    i = np.arange(expo.shape[1], dtype=np.float64)
    mean_i = (expo[:rows] @ i) / total[:rows]
    var = np.maximum((expo[:rows] @ (i * i)) / total[:rows] - mean_i * mean_i, 0.0)
    return RoundLikelihood(loglik=loglik, mean=mean_i + start[:rows], var=var)
