"""The ports: what the round pipeline needs from the world, as types both sides import.

The core (`canary.engine`, `canary.judge`) and the application modules
(`canary.rounds`, `canary.daemon`, `canary.replay`, ...) talk to the outside only
through these interfaces; the edges implement them:

- `MetricSource` -> `canary.metrics.source.PrometheusSource` (Prometheus) and
  `canary.metrics.simulated.SimulatedMesh` (the demo);
- `Router` -> the routers of `canary.traffic` (Istio VirtualService, Gateway API
  HTTPRoute, in memory), all subclasses of `canary.traffic.base.Router`.

The store (`canary.store`) is the analysis store: plain functions on a SQLAlchemy
session, see docs/architecture.md.

No I/O here, and nothing imported from the edges (metrics/, traffic/, api/, store/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from canary.config import CanaryConfig
from canary.model import RoundData

__all__ = ["Collected", "MetricSource", "RevisionSource", "Router", "WriteOutcome"]


@dataclass(frozen=True, slots=True)
class Collected:
    """One round's numbers: the judges' view, the new counter snapshot, the raw series.

    `snapshot` is what the next round's deltas are computed against (stored as
    `analysis.snapshot`); `raw[metric][arm]` is the raw per-series counter snapshot
    kept for audit with the round's observations. When the queries failed,
    `data.error` is set and `snapshot` is the previous snapshot unchanged.
    """

    data: RoundData
    snapshot: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)


class MetricSource(Protocol):
    """Where a round's numbers come from (Prometheus, or the demo's simulated mesh)."""

    async def collect(
        self,
        canary: CanaryConfig,
        at: datetime,
        previous_snapshot: Mapping[str, Any],
        *,
        bounds: Mapping[str, Sequence[float]] | None = None,
    ) -> Collected:
        """Snapshot the counters at `at` and compute deltas against `previous_snapshot`.

        `bounds`: the histogram bounds the judge has fixed per metric; a source may
        then collect only those buckets (and +Inf).

        Never raises for Prometheus faults: returns `data.error` set and the previous
        snapshot, so a failed round changes no evidence (missing data is never a pass).
        """
        ...


@runtime_checkable
class RevisionSource(Protocol):
    """A metric source that can tell which revision the canary arm runs (auto-start)."""

    async def current_revision(self, canary: CanaryConfig, at: datetime) -> str | None:
        """The canary arm's `revision_label` value with the most requests at `at`.

        None when no traffic carries the label or the source cannot be read (logged).
        """
        ...


class WriteOutcome(Protocol):
    """What a router's write reports: whether it changed the weights."""

    @property
    def changed(self) -> bool: ...


class Router(Protocol):
    """Moves one canary's traffic: the part of `canary.traffic.base.Router` rounds use.

    What `set_weights` raises and why re-applying an action is safe is documented
    once, on `canary.traffic.base.Router.set_weights`.
    """

    async def set_weights(
        self,
        canary: int,
        *,
        analysis: str | None = None,
        step: int | None = None,
        by: str = "canary",
        force: bool = False,
    ) -> WriteOutcome: ...

    async def aclose(self) -> None: ...
