"""Observations refuse impossible numbers at the boundary, whatever the caller."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.model import Counts, Histogram

BOUNDS = (10.0, 100.0, math.inf)


@pytest.mark.parametrize(
    ("total", "failed"),
    [
        (5000.5, 0),
        (math.nan, 0),
        (math.inf, 0),
        (100, math.nan),
        (100, -1),
        (-1, 0),
        (True, 0),
        ("100", 1),
        (None, 0),
        (10, 11),
    ],
)
def test_counts_refuse_non_integers_nan_inf_and_negatives(total, failed):
    with pytest.raises(ValueError, match=r"counts"):
        Counts(total, failed)


def test_counts_accept_integers_in_any_integer_type():
    c = Counts(np.int64(5000), 12.0)
    assert (c.total, c.failed) == (5000, 12)
    assert type(c.total) is int and type(c.failed) is int


@pytest.mark.parametrize(
    "buckets",
    [(1, 2, 2.5), (1, 2, math.nan), (1, 2, math.inf), (-1, 2, 3), (1, 3, 2), (1, False, 2)],
)
def test_histograms_refuse_bad_buckets(buckets):
    with pytest.raises(ValueError, match="histogram"):
        Histogram(BOUNDS, buckets)


def test_histograms_refuse_nan_bounds():
    with pytest.raises(ValueError, match="bound"):
        Histogram((10.0, math.nan, math.inf), (1, 2, 3))


def test_histograms_normalise_integer_types():
    h = Histogram((10, 100, math.inf), (np.int32(1), 2.0, 3))
    assert h.buckets == (1, 2, 3) and all(type(b) is int for b in h.buckets)
    assert h.bounds == (10.0, 100.0, math.inf)
