"""The one backoff rule for retried calls: Prometheus queries, Kubernetes API calls,
webhooks.

The n-th retry (n = 1, 2, ...) waits ``base * 2 ** (n - 1)`` seconds, at most `cap`:
the exponential backoff of client-go's ``wait.Backoff`` (Duration x Factor^steps, at
most Cap) with Factor 2 and no jitter. Which failures are retried, and how many
times, is each caller's rule (documented with the caller).
"""

from __future__ import annotations

__all__ = ["backoff_delay"]


def backoff_delay(retry: int, base: float, cap: float | None = None) -> float:
    """Seconds to wait before the `retry`-th retry (1-based)."""
    if retry < 1:
        raise ValueError(f"retry counts from 1, got {retry}")
    delay = base * 2 ** (retry - 1)
    return delay if cap is None else min(delay, cap)
