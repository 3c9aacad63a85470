"""The one backoff rule shared by the Prometheus client, the Kubernetes client and
webhooks: doubling from the configured base, capped where the caller caps it."""

from __future__ import annotations

import pytest

from canary.retry import backoff_delay


def test_each_retry_waits_twice_as_long_as_the_one_before() -> None:
    assert [backoff_delay(n, 0.5) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_the_cap_bounds_the_wait() -> None:
    assert [backoff_delay(n, 0.2, cap=5.0) for n in (1, 5, 6, 10)] == [0.2, 3.2, 5.0, 5.0]


def test_retries_count_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1"):
        backoff_delay(0, 0.5)
