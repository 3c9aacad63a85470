"""Admission of new Argo analyses: a per-token rate and a cap on running analyses.

Every new Argo key creates a stored analysis, so an authenticated client could
otherwise create them without bound. Before creating one:

- per token, at most `[server] new_analyses_per_minute` in any 60 s (a sliding
  window kept in this process, so per replica; tokens are kept as a hash);
- at most `[server] max_running_analyses` Argo analyses that are running and were
  measured recently (within the longer of 10 minutes and 3 of the longest canary
  interval: an analysis whose rollout ended stops counting once Argo stops calling).

A refusal is a 429 JSON answer with `Retry-After`; Argo counts it as an Error and
retries 10 s later. Calls for existing keys are never refused.
"""

from __future__ import annotations

import hashlib
from collections import deque
from datetime import datetime, timedelta

from canary.api.errors import ApiError
from canary.config import Config
from canary.store.database import Session
from canary.store.reads import running_since

__all__ = ["NewAnalysisLimiter", "count_running", "recent_window", "token_id"]

_WINDOW = 60.0


def token_id(authorization: str | None) -> str:
    """A stable, non-reversible name for the caller's token ('anonymous' without one)."""
    token = (authorization or "").partition(" ")[2].strip()
    if not token:
        return "anonymous"
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class NewAnalysisLimiter:
    """A sliding 60 s window of creations per token."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._created: dict[str, deque[float]] = {}

    def check(self, who: str, now: float) -> None:
        """Raise a 429 ApiError when `who` has used up its new analyses for now."""
        created = self._created.get(who)
        if created is None:
            return
        while created and created[0] <= now - _WINDOW:
            created.popleft()
        if not created:
            del self._created[who]
        elif len(created) >= self.per_minute:
            retry = max(1, int(created[0] + _WINDOW - now + 0.999))
            raise ApiError(
                429,
                f"too many new analyses: at most {self.per_minute} new Argo keys per minute "
                f"per API token; retry in {retry}s (existing keys are not limited)",
                headers={"Retry-After": str(retry)},
            )

    def record(self, who: str, now: float) -> None:
        self._created.setdefault(who, deque()).append(now)


def recent_window(config: Config) -> timedelta:
    """How recently an analysis must have been measured to count as running."""
    longest = max((c.interval for c in config.canary), default=0.0)
    return timedelta(seconds=max(600.0, 3 * longest))


def count_running(session: Session, since: datetime) -> int:
    """Argo analyses that are running and were measured at or after `since`."""
    return running_since(session, "argo", since)
