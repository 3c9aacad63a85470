"""The one retry loop shared by the Prometheus client, the Kubernetes client and
webhooks: doubling from the configured base, capped where the caller caps it, retrying
only what the caller's rule accepts."""

from __future__ import annotations

import asyncio

import pytest

from canary.retry import RetryPolicy, backoff_delay, retrying


def test_each_retry_waits_twice_as_long_as_the_one_before() -> None:
    assert [backoff_delay(n, 0.5) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_the_cap_bounds_the_wait() -> None:
    assert [backoff_delay(n, 0.2, cap=5.0) for n in (1, 5, 6, 10)] == [0.2, 3.2, 5.0, 5.0]


def test_retries_count_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1"):
        backoff_delay(0, 0.5)


class Flaky(Exception):
    pass


def _attempts(outcomes: list[Exception | str]):  # type: ignore[no-untyped-def]
    """An attempt function answering `outcomes` in turn, and the attempt numbers seen."""
    seen: list[int] = []

    async def attempt(number: int) -> str:
        seen.append(number)
        outcome = outcomes[number - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return attempt, seen


def test_retryable_failures_are_retried_until_an_answer() -> None:
    attempt, seen = _attempts([Flaky("1"), Flaky("2"), "answer"])
    retries: list[tuple[int, float]] = []
    result = asyncio.run(
        retrying(
            attempt,
            RetryPolicy(retries=3, base=0.001, cap=0.0015),
            retryable=lambda e: isinstance(e, Flaky),
            on_retry=lambda n, delay, e: retries.append((n, delay)),
        )
    )
    assert result == "answer"
    assert seen == [1, 2, 3]
    assert retries == [(1, 0.001), (2, 0.0015)]


def test_the_last_failure_propagates_when_the_retries_run_out() -> None:
    attempt, seen = _attempts([Flaky("1"), Flaky("2"), Flaky("3")])
    policy = RetryPolicy(retries=2, base=0.001)
    with pytest.raises(Flaky, match="3"):
        asyncio.run(retrying(attempt, policy, retryable=lambda e: isinstance(e, Flaky)))
    assert seen == [1, 2, 3]


def test_a_failure_the_rule_does_not_accept_is_not_retried() -> None:
    attempt, seen = _attempts([ValueError("bad request"), "answer"])
    policy = RetryPolicy(retries=5, base=0.001)
    with pytest.raises(ValueError, match="bad request"):
        asyncio.run(retrying(attempt, policy, retryable=lambda e: isinstance(e, Flaky)))
    assert seen == [1]
