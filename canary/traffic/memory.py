"""An in-memory router for the demo, dry runs and tests: no cluster, same rules.

It keeps the weights and the last write record in the object, checks drift exactly
like the Istio router (`decide_write`), and lets a test or the demo play "someone
else" with `external_set` (which moves the weights without updating our record).
"""

from __future__ import annotations

import asyncio
import logging

from canary.traffic.base import (
    Router,
    TrafficState,
    Weights,
    WriteRecord,
    WriteResult,
    decide_write,
)

__all__ = ["MemoryRouter"]

log = logging.getLogger(__name__)


class MemoryRouter(Router):
    """Weights held in memory for one canary (initially all traffic to stable)."""

    def __init__(
        self,
        name: str = "canary",
        *,
        initial: Weights | None = None,
        resource: str | None = None,
        route: str = "(memory)",
    ) -> None:
        self.name = name
        self.resource = resource or f"memory route of canary {name}"
        self.route = route
        self._weights = initial or Weights(0, 100)
        self._record: WriteRecord | None = None
        self._lock = asyncio.Lock()
        #: Every write applied, oldest first (the demo and tests read it).
        self.history: list[WriteRecord] = []

    async def get(self) -> TrafficState:
        return TrafficState(
            weights=self._weights,
            resource=self.resource,
            route=self.route,
            last_write=self._record,
            api_version="memory",
            resource_version=str(len(self.history)),
        )

    async def set_weights(
        self,
        canary: int,
        *,
        analysis: str | None = None,
        step: int | None = None,
        by: str = "canary",
        force: bool = False,
    ) -> WriteResult:
        target = Weights.of_canary(canary)
        async with self._lock:
            before = self._weights
            if not decide_write(
                self.resource,
                before,
                self._record,
                target,
                analysis=analysis,
                step=step,
                force=force,
            ):
                return WriteResult(before, before, changed=False, record=self._record)
            record = WriteRecord(weights=target, analysis=analysis, step=step, by=by)
            self._weights, self._record = target, record
            self.history.append(record)
            log.info(
                "%s: canary weight %d -> %d",
                self.resource,
                before.canary,
                target.canary,
                extra={"canary": self.name, "analysis": analysis, "step": step},
            )
            return WriteResult(before, target, changed=before != target, record=record)

    def external_set(self, canary: int) -> None:
        """Move the weights as someone else would (our record stays): causes drift."""
        self._weights = Weights.of_canary(canary)
