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

`conditional_mle` solves for the common odds ratio of many tables exactly: the root of
the conditional score sum_k (x_k - E_psi[x_k]) (a 1-D solve, no grid).

Everything is in log space: log w_j uses `gammaln`, the sums `logsumexp` over j.
The constant log n! + log m! cancels in every ratio and is dropped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln

__all__ = ["RoundLikelihood", "conditional_mle", "informative", "round_loglik", "round_logliks"]


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
    g = gammaln(np.array([lo + 1, n - lo + 1, e - lo + 1, m - e + lo + 1], dtype=np.float64))
    first = -(float(g[0]) + float(g[1]) + float(g[2]) + float(g[3]))
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


class _Grid:
    """Per-grid constants reused by every round: the grid with psi = 1 appended, psi,
    the psi-only factors of `_windows`, and outer(grid, 0..w-1) for any width w."""

    __slots__ = ("c_disc", "c_mu", "grid", "index", "outer", "psi", "squares")

    def __init__(self, log_psi: np.ndarray) -> None:
        self.grid = np.append(np.asarray(log_psi, dtype=np.float64), 0.0)
        self.psi = np.exp(self.grid)
        self.c_disc = 4.0 * (1.0 - self.psi) * self.psi
        self.c_mu = 2.0 * self.psi
        self._grow(64)

    def _grow(self, width: int) -> None:
        self.index = np.arange(width, dtype=np.float64)
        self.squares = self.index * self.index
        self.outer = np.outer(self.grid, self.index)

    def steps(self, width: int) -> np.ndarray:
        """outer(grid, arange(width)): log psi_p * i, a view of a cached matrix."""
        if width > self.outer.shape[1]:
            if width > _MAX_CACHED_WIDTH:
                return np.outer(self.grid, np.arange(width, dtype=np.float64))
            self._grow(max(width, 2 * self.outer.shape[1]))
        return self.outer[:, :width]

    def offsets(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(i, i * i) for i = 0..width-1."""
        if width > self.index.shape[0]:
            index = np.arange(width, dtype=np.float64)
            return index, index * index
        return self.index[:width], self.squares[:width]


_MAX_CACHED_WIDTH = 1 << 14
_GRIDS: dict[bytes, _Grid] = {}


#: The last read-only grid array asked for and its _Grid, replaced as one tuple (a
#: judge asks for the same array every round).
_LAST: tuple[Any, Any] = (None, None)


def _grid(log_psi: np.ndarray) -> _Grid:
    global _LAST
    given, cached = _LAST
    if log_psi is given:
        return cached
    given = log_psi
    log_psi = np.asarray(log_psi, dtype=np.float64)
    key = log_psi.tobytes()
    grid = _GRIDS.get(key)
    if grid is None:
        if len(_GRIDS) >= 64:
            _GRIDS.clear()
        grid = _GRIDS[key] = _Grid(log_psi)
    if isinstance(given, np.ndarray) and given.base is None and not given.flags.writeable:
        _LAST = (given, grid)
    return grid


def _windows(n: Any, m: Any, e: Any, grid: Any, lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per psi, a j-range around the approximate mean holding all but ~e^-30 of the sum.

    One table and a grid of psi, or (`conditional_mle`) arrays of tables and one psi:
    `grid` needs `psi`, `c_disc` = 4 (1 - psi) psi and `c_mu` = 2 psi.

    Approximate mean: the root of mu (m - e + mu) = psi (n - mu)(e - mu) (Cornfield
    1956); variance: 1 / (1/mu + 1/(n-mu) + 1/(e-mu) + 1/(m-e+mu)) (Stevens 1951).
    """
    psi = grid.psi
    b = m - e + psi * (n + e)
    disc = np.maximum(b * b + grid.c_disc * n * e, 0.0)
    mu = grid.c_mu * n * e / (b + np.sqrt(disc))
    mu = np.minimum(np.maximum(mu, lo), hi)
    # Every divisor is at least 0.5: no division by zero.
    inv = 1 / np.maximum(mu, 0.5) + 1 / np.maximum(n - mu, 0.5)
    inv += 1 / np.maximum(e - mu, 0.5) + 1 / np.maximum(m - e + mu, 0.5)
    half = np.ceil(_WINDOW_SD * np.sqrt(1.0 / inv)) + 6
    wlo = np.minimum(np.maximum(np.floor(mu - half), lo), hi).astype(np.int64)
    whi = np.minimum(np.maximum(np.ceil(mu + half), lo), hi).astype(np.int64)
    return wlo, whi


def _log_terms(
    x: int, n: int, y: int, m: int, grid: _Grid
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(terms, start, offset, row_max) with log w_j + j log psi_p = terms[p, i] + offset[p]
    for j = start[p] + i: each row covers the j-window that holds its psi's mass.
    row_max (the rows' maxima) is None when not computed yet."""
    log_psi = grid.grid
    e = x + y
    lo, hi = max(0, e - m), min(n, e)
    size = hi - lo + 1
    if size > 256:
        wlo, whi = _windows(n, m, e, grid, lo, hi)
        width = int((whi - wlo).max()) + 1
        if 2 * width < size:
            # Same width for every row (shifted left at the top end), so no masking.
            start = np.minimum(wlo, hi - width + 1)
            ulo, uhi = int(start.min()), int(start.max()) + width - 1
            _, logw_u = _log_weights(n, m, e, ulo, uhi)
            stride = logw_u.strides[0]
            windows = np.ndarray(
                (len(logw_u) - width + 1, width), np.float64, logw_u, 0, (stride, stride)
            )
            terms = windows[start - ulo]  # a copy, one row per psi
            terms += grid.steps(width)
            row_max = terms.max(axis=1)
            ok_left = (start == lo) | (terms[:, 0] < row_max - _EDGE_DROP)
            ok_right = (start + width - 1 == hi) | (terms[:, -1] < row_max - _EDGE_DROP)
            if (ok_left & ok_right).all():
                return terms, start, start * log_psi, row_max
    _, logw = _log_weights(n, m, e, lo, hi)
    terms = logw[None, :] + grid.steps(size)
    start = np.full(len(log_psi), lo, dtype=np.int64)
    return terms, start, lo * log_psi, None


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
    variance of x under each psi (score and information) — only for the first
    `moment_rows` grid points when given; otherwise those are empty arrays. Each psi
    sums only over the j-window that holds its mass (checked: the window's edge terms
    are at least e^30 below its largest), so the cost stays O(len(log_psi) * sd) even
    for millions of requests.
    """
    cached = _grid(log_psi)
    grid = cached.grid  # log_psi and a last row psi = 1
    terms, start, offset, row_max = _log_terms(x, n, y, m, cached)
    if row_max is None:
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
    i, i2 = cached.offsets(expo.shape[1])
    mean_i = (expo[:rows] @ i) / total[:rows]
    var = np.maximum((expo[:rows] @ i2) / total[:rows] - mean_i * mean_i, 0.0)
    return RoundLikelihood(loglik=loglik, mean=mean_i + start[:rows], var=var)


#: Tables with more j than this are computed on their own (as `round_loglik`, with
#: its windows) in `round_logliks`.
_WIDE = 256
#: Columns (j values of whole tables) `round_logliks` computes at a time: a chunk of
#: grid rows x columns stays in the CPU cache.
_CHUNK = 512


def round_logliks(
    tables: Sequence[tuple[int, int, int, int]], log_psi: np.ndarray, rows: slice = slice(None)
) -> np.ndarray:
    """ell(psi) of many informative tables at once, one row per table, at the grid
    points `rows` of `log_psi` (NaN at the others).

    The same arithmetic as `round_loglik`, element for element and sum for sum, so
    every value equals its `round_loglik` value to the last bit; a grid point's value
    depends only on its own psi, so leaving points out changes none of the others.
    Tables are taken in groups of equal support size (the sums over j run over
    contiguous rows of that size, as in `round_loglik`); a table whose support is
    wider than `_WIDE` (which `round_loglik` sums over windows), or a lone table, is
    computed on its own as there.
    """
    cached = _grid(log_psi)
    points = len(cached.grid) - 1
    out = np.full((len(tables), points), np.nan)
    if not len(tables):
        return out
    arr = np.asarray(tables, dtype=np.int64).reshape(-1, 4)
    x, n, y, m = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
    e = x + y
    lo = np.maximum(0, e - m)
    size = np.minimum(n, e) - lo + 1
    pick = np.append(np.arange(points)[rows], points)  # the points asked for, then psi = 1
    grid = cached.grid[pick]
    alone = (size > _WIDE) | (len(arr) == 1)
    for k in np.flatnonzero(alone).tolist():
        out[k, rows] = _picked_loglik(arr[k].tolist(), cached, pick)
    order = np.flatnonzero(~alone)
    if not len(order):
        return out
    order = order[np.argsort(size[order], kind="stable")]
    x, n, e, m, lo, size = (a[order] for a in (x, n, e, m, lo, size))
    log_w, j = _flat_log_weights(n, m, e, lo, size)
    top = np.empty((len(grid), len(order)))
    total = np.empty_like(top)
    # Tables sorted by size: each group of one size is a block of columns, and
    # chunks of whole groups are computed in one buffer.
    edges = [0, *(np.flatnonzero(np.diff(size)) + 1).tolist(), len(order)]
    groups = list(itertools.pairwise(edges))
    col = np.concatenate([[0], np.cumsum(size)]).tolist()
    limit = max(_CHUNK, max(col[b] - col[a] for a, b in groups))
    buffer = np.empty(len(grid) * limit)
    g = 0
    while g < len(groups):
        h = g
        while h + 1 < len(groups) and col[groups[h + 1][1]] - col[groups[g][0]] <= limit:
            h += 1
        c0, c1 = col[groups[g][0]], col[groups[h][1]]
        # log w_j + j log psi, relative to the table's lowest j (as `_Grid.steps`).
        terms = buffer[: len(grid) * (c1 - c0)].reshape(len(grid), c1 - c0)
        np.multiply(grid[:, None], j[None, c0:c1], out=terms)
        terms += log_w[None, c0:c1]
        a0, b0 = groups[g][0], groups[h][1]
        top[:, a0:b0] = np.maximum.reduceat(terms, np.subtract(col[a0:b0], c0), axis=1)
        terms -= np.repeat(top[:, a0:b0], size[a0:b0], axis=1)
        np.exp(terms, out=terms)
        for a, b in groups[g : h + 1]:
            block = terms[:, col[a] - c0 : col[b] - c0].reshape(len(grid), b - a, -1)
            total[:, a:b] = block.sum(axis=2)
        g = h + 1
    # As `round_loglik`: log Z(psi) = lo log psi + max + log sum, then
    # ell(psi) = x log psi - (log Z(psi) - log Z(1)).
    log_z = lo[None, :] * grid[:, None] + top + np.log(total)
    out[order, rows] = (x[None, :] * grid[:-1, None] - (log_z[:-1] - log_z[-1])).T
    return out


def _picked_loglik(table: list[int], cached: _Grid, pick: np.ndarray) -> np.ndarray:
    """`round_loglik` of one table at the grid rows `pick` (the last one psi = 1): its
    windows are chosen on the whole grid, as there."""
    x, n, y, m = table
    terms, _, offset, row_max = _log_terms(x, n, y, m, cached)
    if len(pick) < len(cached.grid):
        terms = terms[pick]
    top = terms.max(axis=1) if row_max is None else row_max[pick]
    terms -= top[:, None]
    log_z = offset[pick] + top + np.log(np.exp(terms, out=terms).sum(axis=1))
    return x * cached.grid[pick][:-1] - (log_z[:-1] - log_z[-1])


def _flat_log_weights(
    n: np.ndarray, m: np.ndarray, e: np.ndarray, lo: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """log w_j (as `_log_weights`) and j - lo of every table, tables one after another."""
    g = gammaln(np.stack([lo + 1, n - lo + 1, e - lo + 1, m - e + lo + 1], axis=1).astype(float))
    first = -(((g[:, 0] + g[:, 1]) + g[:, 2]) + g[:, 3])
    width = int(size.max())
    mask = np.arange(width)[None, :] < size[:, None]
    offsets = np.broadcast_to(np.arange(width, dtype=np.float64), mask.shape)[mask]
    log_w = np.zeros(mask.shape)
    # The term ratio w_{j+1} / w_j at every j but each table's last, placed at j + 1.
    ratio = mask.copy()
    ratio[:, 0] = False
    head = np.repeat(lo, size - 1) + offsets[ratio[mask]] - 1.0
    nn, ee, rest = (np.repeat(a, size - 1).astype(float) for a in (n, e, m - e))
    log_w[ratio] = np.log((nn - head) * (ee - head)) - np.log((head + 1) * (rest + head + 1))
    np.cumsum(log_w, axis=1, out=log_w)
    log_w += first[:, None]
    return log_w[mask], offsets


class _OnePsi:
    """The psi factors `_windows` reads, for a single psi."""

    __slots__ = ("c_disc", "c_mu", "psi")

    def __init__(self, log_psi: float) -> None:
        self.psi = math.exp(log_psi)
        self.c_disc = 4.0 * (1.0 - self.psi) * self.psi
        self.c_mu = 2.0 * self.psi


class _Supports:
    """Every table's j-window around its mass at one psi, flattened, with log w_j up to a
    constant per table (the term ratios accumulated; constants cancel in each table's
    moments)."""

    def __init__(self, tables: np.ndarray, log_psi: float) -> None:
        n, y, m = tables[:, 1], tables[:, 2], tables[:, 3]
        e = tables[:, 0] + y
        self.lo, self.hi = np.maximum(0, e - m), np.minimum(n, e)
        wlo, whi = _windows(n, m, e, _OnePsi(log_psi), self.lo, self.hi)
        self.wlo, self.whi = wlo, whi
        length = whi - wlo + 1
        self.first = np.concatenate([[0], np.cumsum(length)[:-1]])
        self.last = self.first + length - 1
        self.offset = (np.arange(int(length.sum())) - np.repeat(self.first, length)).astype(
            np.float64
        )
        j = np.repeat(wlo, length) + self.offset  # the j of each element, as floats
        nn, ee, mm = (np.repeat(a, length).astype(np.float64) for a in (n, e, m))
        # log w_{j+1} - log w_j = log((n - j)(e - j)) - log((j + 1)(m - e + j + 1)),
        # placed at j + 1; each table's first element starts its own sum at 0.
        head = j - 1.0
        step = np.log(np.maximum((nn - head) * (ee - head), 1e-300))
        step -= np.log(np.maximum((head + 1.0) * (mm - ee + head + 1.0), 1e-300))
        step[self.first] = 0.0
        total = np.cumsum(step)
        self.log_w = total - np.repeat(total[self.first], length)
        self.length = length

    def moments(self, log_psi: float) -> tuple[float, float, bool]:
        """(sum of E_psi[x_k], sum of Var_psi[x_k], whether every window holds the mass)."""
        terms = self.log_w + self.offset * log_psi
        top = np.maximum.reduceat(terms, self.first)
        terms -= np.repeat(top, self.length)
        ok = ((self.wlo == self.lo) | (terms[self.first] < -_EDGE_DROP)) & (
            (self.whi == self.hi) | (terms[self.last] < -_EDGE_DROP)
        )
        w = np.exp(terms, out=terms)
        s0 = np.add.reduceat(w, self.first)
        wi = w * self.offset
        mean_i = np.add.reduceat(wi, self.first) / s0
        second = np.add.reduceat(wi * self.offset, self.first) / s0
        var = np.maximum(second - mean_i * mean_i, 0.0)
        return float((self.wlo + mean_i).sum()), float(var.sum()), bool(ok.all())


def conditional_mle(tables: Sequence[Sequence[int]], start: float | None = None) -> float | None:
    """The exact conditional MLE of a common odds ratio over 2x2 tables (x, n, y, m).

    The root in psi of sum_k (x_k - E_psi[x_k | margins]) = 0 (the conditional
    likelihood's score; McCullagh & Nelder, Generalized Linear Models, 2nd ed., §7.3),
    solved by safeguarded Newton steps in log psi to 1e-10 (from `start`, else the
    Mantel-Haenszel estimate): no grid and no cap. 0.0 or inf when the canary's
    failures sit at the low or high end of what the margins allow in every table
    (none, or every request it could); None without informative tables.
    """
    rows = [t for t in tables if informative(*t)]
    if not rows:
        return None
    arr = np.asarray(rows, dtype=np.int64)
    x, n, y, m = (arr[:, i] for i in range(4))
    e = x + y
    total = float(x.sum())
    if total <= float(np.maximum(0, e - m).sum()):
        return 0.0
    if total >= float(np.minimum(n, e).sum()):
        return math.inf
    if start is not None and 0.0 < start < math.inf:
        t = math.log(start)
    else:  # Mantel-Haenszel, with 1/2 added against zeros
        size = (n + m).astype(np.float64)
        t = math.log(float(((x + 0.5) * (m - y + 0.5) / size).sum()))
        t -= math.log(float(((y + 0.5) * (n - x + 0.5) / size).sum()))
    low, high = -math.inf, math.inf  # the score is > 0 below the root, < 0 above it
    supports = _Supports(arr, t)
    for _ in range(200):
        mean, var, ok = supports.moments(t)
        if not ok:  # psi moved past the windows: take them again around it
            supports = _Supports(arr, t)
            mean, var, _ = supports.moments(t)
        score = total - mean
        if score == 0.0:
            return math.exp(t)
        if score > 0:
            low = t
        else:
            high = t
        step = max(-2.0, min(2.0, score / var)) if var > 0 else math.copysign(2.0, score)
        if abs(step) < 1e-10:
            return math.exp(t + step)
        # The step points away from the bound just moved to t, so it can only leave the
        # bracket across the other bound, which is then finite: bisect.
        t = t + step if low < t + step < high else (low + high) / 2.0
    return math.exp(t)
