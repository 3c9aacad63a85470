"""A simulated Istio mesh seen as a metric source (the demo; no Prometheus needed).

Each canary has a baseline and a canary arm with settable error rate, latency and
request rate (`ArmModel` of `canary.metrics.simulated_traffic`, the same traffic
model as `bench/judge_power.py`). Traffic is split by the weights the canary's
router currently holds, so advancing a step really sends more requests to the
canary. `speed` runs the mesh's clock faster than real time: a round one real
second long carries `speed` seconds of simulated traffic.

Like the Prometheus source it keeps cumulative counters in the snapshot and returns
the deltas since the previous snapshot; the first round only takes the snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from canary.config import CanaryConfig
from canary.metrics.simulated_traffic import ENVOY_BUCKETS, ArmModel, TrafficModel, simulate
from canary.model import Counts, Histogram, MetricKind, RoundData
from canary.ports import Collected

__all__ = ["SimulatedCanary", "SimulatedMesh"]


@dataclass
class SimulatedCanary:
    """The traffic of one canary: requests per second and the two arms' models."""

    rps: float = 1000.0
    baseline: ArmModel = field(default_factory=lambda: ArmModel(error_rate=0.01))
    canary: ArmModel = field(default_factory=lambda: ArmModel(error_rate=0.01))


class SimulatedMesh:
    """A MetricSource over simulated canaries.

    `weight_of(name)` returns the canary's current weight in percent (the demo reads
    it from the in-memory router); `speed` is simulated seconds per real second.
    """

    def __init__(
        self,
        canaries: Mapping[str, SimulatedCanary],
        weight_of: Callable[[str], Awaitable[int]],
        *,
        speed: float = 60.0,
        seed: int = 1,
    ) -> None:
        self.canaries = dict(canaries)
        self.weight_of = weight_of
        self.speed = speed
        self._rng = np.random.default_rng(seed)

    async def collect(
        self,
        canary: CanaryConfig,
        at: datetime,
        previous_snapshot: Mapping[str, Any],
        *,
        bounds: Any = None,
    ) -> Collected:
        traffic = self.canaries[canary.name]
        counters = _Counters.from_json(previous_snapshot)
        if counters.at is not None:
            seconds = max((at - counters.at).total_seconds(), 0.0) * self.speed
            weight = await self.weight_of(canary.name)
            counters.add(self._traffic(traffic, seconds, weight / 100))
        counters.at = at
        snapshot = counters.to_json()
        if not previous_snapshot:
            empty = {m.name: None for m in canary.metrics}
            return Collected(RoundData(empty, dict(empty), end=at), snapshot)
        data = counters.delta(_Counters.from_json(previous_snapshot), canary, at)
        return Collected(data, snapshot)

    def _traffic(self, traffic: SimulatedCanary, seconds: float, share: float) -> dict[str, Any]:
        if seconds <= 0:
            return {}
        model = TrafficModel(
            rps=traffic.rps,
            rounds=1,
            round_seconds=seconds,
            canary_weight=share,
            baseline=traffic.baseline,
            canary=traffic.canary,
        )
        sim = simulate(model, 1, int(self._rng.integers(2**31)))
        return {
            "canary": (sim.canary_total[0, 0], sim.canary_failed[0, 0], sim.canary_buckets[0, 0]),
            "baseline": (
                sim.baseline_total[0, 0],
                sim.baseline_failed[0, 0],
                sim.baseline_buckets[0, 0],
            ),
        }


@dataclass
class _Counters:
    """Cumulative counters per arm: requests, failures, latency buckets."""

    at: datetime | None = None
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Counters:
        at = datetime.fromisoformat(data["at"]) if data.get("at") else None
        arms = {arm: dict(values) for arm, values in data.get("arms", {}).items()}
        return cls(at=at, arms=arms)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat() if self.at else None, "arms": self.arms}

    def add(self, traffic: Mapping[str, Any]) -> None:
        for arm, (total, failed, buckets) in traffic.items():
            current = self.arms.setdefault(
                arm, {"total": 0, "failed": 0, "buckets": [0] * len(ENVOY_BUCKETS)}
            )
            current["total"] += int(total)
            current["failed"] += int(failed)
            current["buckets"] = [
                int(a) + int(b) for a, b in zip(current["buckets"], buckets, strict=True)
            ]

    def delta(self, before: _Counters, canary: CanaryConfig, at: datetime) -> RoundData:
        sides: dict[str, dict[str, Any]] = {"canary": {}, "baseline": {}}
        for arm in sides:
            empty = {"total": 0, "failed": 0, "buckets": [0] * len(ENVOY_BUCKETS)}
            now = self.arms.get(arm, empty)
            old = before.arms.get(arm, empty)
            for metric in canary.metrics:
                if metric.kind is MetricKind.COUNTS:
                    sides[arm][metric.name] = Counts(
                        now["total"] - old["total"], now["failed"] - old["failed"]
                    )
                elif metric.kind is MetricKind.HISTOGRAM:
                    buckets = tuple(
                        a - b for a, b in zip(now["buckets"], old["buckets"], strict=True)
                    )
                    sides[arm][metric.name] = Histogram(ENVOY_BUCKETS, buckets)
                else:
                    sides[arm][metric.name] = None  # value metrics are not simulated
        return RoundData(sides["canary"], sides["baseline"], start=before.at, end=at)
