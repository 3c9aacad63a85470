"""The one retry loop for calls over the network: Prometheus queries, Kubernetes API
calls, webhooks.

The n-th retry (n = 1, 2, ...) waits ``base * 2 ** (n - 1)`` seconds, at most `cap`:
the exponential backoff of client-go's ``wait.Backoff`` (Duration x Factor^steps, at
most Cap) with Factor 2 and no jitter. How many retries, and the delays, are a
`RetryPolicy`; which failures are retried is each caller's rule (documented with the
caller), given to `retrying` as a predicate on the exception an attempt raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["RetryPolicy", "backoff_delay", "retrying"]

T = TypeVar("T")


def backoff_delay(retry: int, base: float, cap: float | None = None) -> float:
    """Seconds to wait before the `retry`-th retry (1-based)."""
    if retry < 1:
        raise ValueError(f"retry counts from 1, got {retry}")
    delay = base * 2 ** (retry - 1)
    return delay if cap is None else min(delay, cap)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `retries` retries after the first attempt, waiting `backoff_delay`."""

    retries: int
    base: float
    cap: float | None = None

    def delay(self, retry: int) -> float:
        """Seconds to wait before the `retry`-th retry (1-based)."""
        return backoff_delay(retry, self.base, self.cap)


async def retrying(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retryable: Callable[[Exception], bool],
    on_retry: Callable[[int, float, Exception], None] | None = None,
) -> T:
    """What ``attempt(1)``, ``attempt(2)``, ... returns first.

    An exception that `retryable` accepts is retried after `policy`'s delay while
    retries remain (`on_retry(retry, delay, exc)` is told first, e.g. to log); any
    other exception, or the last attempt's, propagates.
    """
    number = 1
    while True:
        try:
            return await attempt(number)
        except Exception as exc:
            if number > policy.retries or not retryable(exc):
                raise
            delay = policy.delay(number)
            if on_retry is not None:
                on_retry(number, delay, exc)
            await asyncio.sleep(delay)
            number += 1
