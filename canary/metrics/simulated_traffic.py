"""A seeded simulator of Istio canary traffic, round by round (pure numpy).

Per round and arm: Poisson request arrivals (rate x round length x arm weight x load),
binomial failures, and latencies drawn from a lognormal distribution straight into
Envoy's default `le` buckets (a multinomial over the bucket probabilities, which is
exactly the distribution of the bucket counts of i.i.d. lognormal latencies).
Everything is vectorised over replications: arrays have shape (replications, rounds).

Robustness effects, each off by default:

- `bad_pod`: each arm runs `pods` pods and one of them fails in bursts: its error
  rate in each round is Gamma-distributed (mean `bad_pod_rate`, shape
  `bad_pod_shape`) independently per arm — over-dispersion between rounds;
- `diurnal`: load x (1 + 0.8 sin(2 pi k / rounds)); error rate x load (both arms);
- `incident`: rounds [start, start + length) fail at `incident_rate` and are 3x slower
  in both arms;
- `reset_prob`: a pod of the arm restarts inside the round and the counts it served
  before the restart are lost (binomial thinning, unbiased);
- `missing_prob`: the round's queries fail; the next round's deltas then hold both
  rounds (counters are cumulative).

The demo and `bench/judge_power.py` share this model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import ndtr

from canary.model import Counts, Histogram, RoundData

__all__ = [
    "ENVOY_BUCKETS",
    "ArmModel",
    "SimulatedRounds",
    "TrafficModel",
    "bucket_probabilities",
    "simulate",
]

#: Envoy's default histogram bucket bounds in milliseconds (Istio's request duration).
ENVOY_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000, math.inf,
)  # fmt: skip


@dataclass(frozen=True)
class ArmModel:
    """What one arm's requests look like."""

    error_rate: float = 0.001
    latency_median_ms: float = 45.0
    latency_sigma: float = 0.6
    #: Latencies above the baseline quantile `tail_quantile` are multiplied by this.
    tail_factor: float = 1.0
    tail_quantile: float = 0.95


def bucket_probabilities(arm: ArmModel, bounds: Sequence[float] = ENVOY_BUCKETS) -> np.ndarray:
    """P(latency in each `le` bucket) (differential, sums to 1) for the arm's model.

    With a tail factor f above q = Q(tail_quantile): F'(t) = F(t) for t < q,
    tail_quantile for q <= t < f q, and F(t / f) above.
    """
    mu, sigma = math.log(arm.latency_median_ms), arm.latency_sigma
    finite = np.array([b for b in bounds if math.isfinite(b)], dtype=float)

    def cdf(t: np.ndarray) -> np.ndarray:
        return ndtr((np.log(t) - mu) / sigma)

    cum = cdf(finite)
    if arm.tail_factor != 1.0:
        from scipy.special import ndtri

        q = math.exp(mu + sigma * float(ndtri(arm.tail_quantile)))
        cum = np.where(
            finite < q,
            cum,
            np.where(
                finite < arm.tail_factor * q, arm.tail_quantile, cdf(finite / arm.tail_factor)
            ),
        )
    cum = np.append(cum, 1.0)
    return np.diff(cum, prepend=0.0)


@dataclass(frozen=True)
class TrafficModel:
    """One scenario: traffic, canary weight per round, arm models and robustness effects."""

    rps: float = 100.0
    rounds: int = 60
    round_seconds: float = 60.0
    #: Canary share of traffic: one number, or one per round (stepped rollouts).
    canary_weight: float | tuple[float, ...] = 0.1
    baseline: ArmModel = field(default_factory=ArmModel)
    canary: ArmModel = field(default_factory=ArmModel)
    bad_pod: bool = False
    pods: int = 4
    bad_pod_rate: float = 0.05
    bad_pod_shape: float = 0.3
    diurnal: bool = False
    incident: tuple[int, int] | None = None  # (first round, length), 0-based
    incident_rate: float = 0.2
    reset_prob: float = 0.0
    missing_prob: float = 0.0

    def weights(self) -> np.ndarray:
        if isinstance(self.canary_weight, int | float):
            return np.full(self.rounds, float(self.canary_weight))
        w = np.asarray(self.canary_weight, dtype=float)
        if len(w) != self.rounds:
            raise ValueError(f"canary_weight has {len(w)} entries for {self.rounds} rounds")
        return w

    def with_canary(self, **changes: float) -> TrafficModel:
        return replace(self, canary=replace(self.canary, **changes))


@dataclass
class SimulatedRounds:
    """Per-round observed deltas, arrays of shape (replications, rounds[, buckets])."""

    canary_total: np.ndarray
    canary_failed: np.ndarray
    baseline_total: np.ndarray
    baseline_failed: np.ndarray
    canary_buckets: np.ndarray  # cumulative over le, last = total
    baseline_buckets: np.ndarray
    missing: np.ndarray  # bool: the round's queries failed
    bounds: tuple[float, ...] = ENVOY_BUCKETS

    @property
    def replications(self) -> int:
        return self.canary_total.shape[0]

    def round_data(self, rep: int) -> Iterator[RoundData]:
        """The rounds of one replication as the judges see them (errors + latency)."""
        for k in range(self.canary_total.shape[1]):
            if self.missing[rep, k]:
                yield RoundData(canary={}, baseline={}, error="query failed (simulated)")
                continue
            yield RoundData(
                canary={
                    "errors": Counts(
                        int(self.canary_total[rep, k]), int(self.canary_failed[rep, k])
                    ),
                    "latency": Histogram(
                        self.bounds, tuple(int(v) for v in self.canary_buckets[rep, k])
                    ),
                },
                baseline={
                    "errors": Counts(
                        int(self.baseline_total[rep, k]), int(self.baseline_failed[rep, k])
                    ),
                    "latency": Histogram(
                        self.bounds, tuple(int(v) for v in self.baseline_buckets[rep, k])
                    ),
                },
            )


def _arm(
    rng: np.random.Generator,
    model: TrafficModel,
    arm: ArmModel,
    share: np.ndarray,
    load: np.ndarray,
    replications: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (replications, model.rounds)
    mean = model.rps * model.round_seconds * share * load
    total = rng.poisson(np.broadcast_to(mean, shape))
    rate = np.broadcast_to(arm.error_rate * (load if model.diurnal else 1.0), shape).copy()
    slow = np.zeros(shape, dtype=bool)
    if model.incident is not None:
        start, length = model.incident
        rate[:, start : start + length] = model.incident_rate
        slow[:, start : start + length] = True
    if model.bad_pod:
        burst = rng.gamma(model.bad_pod_shape, model.bad_pod_rate / model.bad_pod_shape, shape)
        rate = rate * (1 - 1 / model.pods) + np.minimum(burst, 1.0) / model.pods
    failed = rng.binomial(total, np.clip(rate, 0.0, 1.0))
    probs = bucket_probabilities(arm)
    slow_probs = bucket_probabilities(replace(arm, latency_median_ms=arm.latency_median_ms * 3))
    flat_total = total.reshape(-1)
    flat_slow = slow.reshape(-1)
    counts = np.empty((flat_total.size, len(probs)), dtype=np.int64)
    if (~flat_slow).any():
        counts[~flat_slow] = rng.multinomial(flat_total[~flat_slow], probs)
    if flat_slow.any():
        counts[flat_slow] = rng.multinomial(flat_total[flat_slow], slow_probs)
    counts = counts.reshape(*shape, len(probs))
    if model.reset_prob > 0:
        # A restarted pod (1 of `pods`) loses what it served before the restart.
        reset = rng.random(shape) < model.reset_prob
        lost = np.where(reset, rng.random(shape) / model.pods, 0.0)
        keep = 1.0 - lost
        ok = total - failed
        failed = rng.binomial(failed, keep)
        ok = rng.binomial(ok, keep)
        total = failed + ok
        counts = rng.binomial(counts, keep[..., None])  # the latency series lose the same share
    return total, failed, counts


def simulate(model: TrafficModel, replications: int, seed: int) -> SimulatedRounds:
    """`replications` independent runs of the scenario, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    w = model.weights()
    k = np.arange(model.rounds)
    load = 1.0 + 0.8 * np.sin(2 * np.pi * k / model.rounds) if model.diurnal else np.ones_like(w)
    c_total, c_failed, c_counts = _arm(rng, model, model.canary, w, load, replications)
    b_total, b_failed, b_counts = _arm(rng, model, model.baseline, 1.0 - w, load, replications)
    missing = np.zeros((replications, model.rounds), dtype=bool)
    if model.missing_prob > 0:
        missing = rng.random((replications, model.rounds)) < model.missing_prob
        missing[:, -1] = False  # the budget round is always observed
        # Counters are cumulative: what a missed round served shows up in the next one.
        for arrays in ((c_total, c_failed, c_counts), (b_total, b_failed, b_counts)):
            for array in arrays:
                for r in range(model.rounds - 1):
                    carried = missing[:, r]
                    if carried.any():
                        array[carried, r + 1] += array[carried, r]
                        array[carried, r] = 0
    return SimulatedRounds(
        canary_total=c_total,
        canary_failed=c_failed,
        baseline_total=b_total,
        baseline_failed=b_failed,
        canary_buckets=np.cumsum(c_counts, axis=-1),
        baseline_buckets=np.cumsum(b_counts, axis=-1),
        missing=missing,
    )
