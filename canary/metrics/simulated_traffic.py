"""A seeded simulator of Istio canary traffic, round by round (pure numpy).

Per round and arm: Poisson request arrivals (rate x round length x arm weight x load),
binomial failures, and latencies drawn from a lognormal distribution straight into
Envoy's default `le` buckets (a multinomial over the bucket probabilities, which is
exactly the distribution of the bucket counts of i.i.d. lognormal latencies).
Everything is vectorised over replications: arrays have shape (replications, rounds).

Robustness effects, each off by default:

- `bad_pod`: each arm runs `pods` pods and one of them fails in bursts: its error
  rate in each round is Gamma-distributed (mean `bad_pod_rate`, shape
  `bad_pod_shape`) independently per arm — over-dispersion between rounds (with
  `pod_counts`, the first pod of each arm is the bursty one);
- `diurnal`: load x (1 + 0.8 sin(2 pi k / rounds)); error rate x load (both arms);
- `incident`: rounds [start, start + length) fail at `incident_rate` and are 3x slower
  in both arms;
- `reset_prob`: a pod of the arm restarts inside the round and the counts it served
  before the restart are lost (binomial thinning, unbiased);
- `missing_prob`: the round's queries fail; the next round's deltas then hold both
  rounds (counters are cumulative);
- `rate_cv`: each arm's error rate in each round is drawn from a Beta distribution with
  mean `error_rate` and this coefficient of variation, independently per arm and round
  (every pod of an arm shares the draw: round-level heterogeneity);
- `pod_counts` = (canary pods, baseline pods): traffic is split evenly over the pods
  and the rounds carry the per-pod breakdown; with `pod_bad_prob` each pod is, for the
  whole run, bad (error rate `pod_bad_rate`) with that probability (the pod lottery),
  and with `pod_latency_cv` each pod's latency median is multiplied by a lognormal
  factor of that spread, also fixed for the run (pod-level heterogeneity);
- `change_round`: the canary behaves like the baseline before this round (0-based)
  and follows its own model from it on (a regression that starts mid-analysis).

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
    rate_cv: float = 0.0
    pod_counts: tuple[int, int] | None = None
    pod_bad_prob: float = 0.0
    pod_bad_rate: float = 0.03
    pod_latency_cv: float = 0.0
    change_round: int = 0

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
    #: Per-pod breakdown when simulated: arm -> (total, failed, buckets), each with a
    #: trailing pod axis before the bucket axis: (replications, rounds, pods[, buckets]).
    pods: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    @property
    def replications(self) -> int:
        return self.canary_total.shape[0]

    def round_data(self, rep: int) -> Iterator[RoundData]:
        """The rounds of one replication as the judges see them (errors + latency)."""
        for k in range(self.canary_total.shape[1]):
            if self.missing[rep, k]:
                yield RoundData(canary={}, baseline={}, error="query failed (simulated)")
                continue
            pods: dict[str, dict[str, dict[str, Counts | Histogram]]] = {}
            for arm, (total, failed, buckets) in (self.pods or {}).items():
                n_pods = total.shape[2]
                pods[arm] = {
                    "errors": {
                        f"{arm}-{i}": Counts(int(total[rep, k, i]), int(failed[rep, k, i]))
                        for i in range(n_pods)
                    },
                    "latency": {
                        f"{arm}-{i}": Histogram(
                            self.bounds, tuple(int(v) for v in buckets[rep, k, i])
                        )
                        for i in range(n_pods)
                    },
                }
            yield RoundData(
                pods=pods,
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


def _beta(rng: np.random.Generator, mean: np.ndarray, cv: float) -> np.ndarray:
    """Beta draws with the given means and coefficient of variation."""
    mean = np.clip(mean, 1e-12, 1 - 1e-12)
    strength = np.maximum((1 - mean) / (mean * cv * cv) - 1, 1e-6)  # a + b
    return rng.beta(mean * strength, (1 - mean) * strength)


def _arm(
    rng: np.random.Generator,
    model: TrafficModel,
    arm: ArmModel,
    share: np.ndarray,
    load: np.ndarray,
    replications: int,
    before: ArmModel | None = None,
    n_pods: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    shape = (replications, model.rounds)
    mean = model.rps * model.round_seconds * share * load
    total = rng.poisson(np.broadcast_to(mean, shape))
    base_rate = np.full(model.rounds, arm.error_rate)
    if before is not None and model.change_round > 0:
        base_rate[: model.change_round] = before.error_rate
    rate = np.broadcast_to(base_rate * (load if model.diurnal else 1.0), shape).copy()
    if model.rate_cv > 0:
        rate = _beta(rng, rate, model.rate_cv)
    slow = np.zeros(shape, dtype=bool)
    if model.incident is not None:
        start, length = model.incident
        rate[:, start : start + length] = model.incident_rate
        slow[:, start : start + length] = True
    burst = None
    if model.bad_pod:
        burst = rng.gamma(model.bad_pod_shape, model.bad_pod_rate / model.bad_pod_shape, shape)
        burst = np.minimum(burst, 1.0)
        if n_pods == 0:
            rate = rate * (1 - 1 / model.pods) + burst / model.pods
    if n_pods > 0:
        return _pods(rng, model, arm, total, rate, replications, before, n_pods, burst)
    failed = rng.binomial(total, np.clip(rate, 0.0, 1.0))
    probs = bucket_probabilities(arm)
    if before is not None and model.change_round > 0:
        probs = np.broadcast_to(probs, (model.rounds, len(probs))).copy()
        probs[: model.change_round] = bucket_probabilities(before)
    slow_probs = bucket_probabilities(replace(arm, latency_median_ms=arm.latency_median_ms * 3))
    flat_total = total.reshape(-1)
    flat_slow = slow.reshape(-1)
    counts = np.empty((flat_total.size, probs.shape[-1]), dtype=np.int64)
    if probs.ndim == 2:  # the canary changes at change_round
        flat_probs = np.broadcast_to(probs, (*shape, probs.shape[-1])).reshape(-1, probs.shape[-1])
        for r in range(model.rounds):
            rows = np.arange(r, flat_total.size, model.rounds)
            counts[rows] = rng.multinomial(flat_total[rows], flat_probs[r])
        flat_slow = np.zeros_like(flat_slow)
    elif (~flat_slow).any():
        counts[~flat_slow] = rng.multinomial(flat_total[~flat_slow], probs)
    if flat_slow.any():
        counts[flat_slow] = rng.multinomial(flat_total[flat_slow], slow_probs)
    counts = counts.reshape(*shape, probs.shape[-1])
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
    return total, failed, counts, None


def _pods(
    rng: np.random.Generator,
    model: TrafficModel,
    arm: ArmModel,
    total: np.ndarray,
    rate: np.ndarray,
    replications: int,
    before: ArmModel | None,
    n_pods: int,
    burst: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Split an arm's rounds over `n_pods` pods with fixed per-run pod effects; with
    `burst`, the first pod fails at that rate per round (the bursty bad pod)."""
    shape = (replications, model.rounds, n_pods)
    pod_total = rng.multinomial(total.reshape(-1), np.full(n_pods, 1.0 / n_pods)).reshape(shape)
    bad = rng.random((replications, 1, n_pods)) < model.pod_bad_prob
    # A bad pod fails at pod_bad_rate instead of the arm's rate (same relative heterogeneity).
    scale = np.where(bad, model.pod_bad_rate / max(arm.error_rate, 1e-12), 1.0)
    if before is not None and model.change_round > 0:
        scale = np.broadcast_to(scale, shape).copy()
        scale[:, : model.change_round] = np.where(
            bad[:, 0, None, :], model.pod_bad_rate / max(before.error_rate, 1e-12), 1.0
        )
    pod_rate = np.clip(rate[..., None] * scale, 0.0, 1.0)
    if burst is not None:
        pod_rate = np.broadcast_to(pod_rate, shape).copy()
        pod_rate[..., 0] = burst
    pod_failed = rng.binomial(pod_total, pod_rate)
    factors = np.exp(model.pod_latency_cv * rng.standard_normal((replications, n_pods)))
    n_buckets = len(ENVOY_BUCKETS)
    counts = np.empty((*shape, n_buckets), dtype=np.int64)
    for rep in range(replications):
        for i in range(n_pods):
            median = arm.latency_median_ms * factors[rep, i]
            probs = bucket_probabilities(replace(arm, latency_median_ms=median))
            counts[rep, :, i] = rng.multinomial(pod_total[rep, :, i], probs)
            if before is not None and model.change_round > 0:
                median0 = before.latency_median_ms * factors[rep, i]
                probs0 = bucket_probabilities(replace(before, latency_median_ms=median0))
                head = pod_total[rep, : model.change_round, i]
                counts[rep, : model.change_round, i] = rng.multinomial(head, probs0)
    pod_buckets = np.cumsum(counts, axis=-1)
    return (
        pod_total.sum(axis=2),
        pod_failed.sum(axis=2),
        counts.sum(axis=2),
        (pod_total, pod_failed, pod_buckets),
    )


def simulate(model: TrafficModel, replications: int, seed: int) -> SimulatedRounds:
    """`replications` independent runs of the scenario, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    w = model.weights()
    k = np.arange(model.rounds)
    load = 1.0 + 0.8 * np.sin(2 * np.pi * k / model.rounds) if model.diurnal else np.ones_like(w)
    c_pods, b_pods = model.pod_counts or (0, 0)
    c_total, c_failed, c_counts, c_by_pod = _arm(
        rng, model, model.canary, w, load, replications, model.baseline, c_pods
    )
    b_total, b_failed, b_counts, b_by_pod = _arm(
        rng, model, model.baseline, 1.0 - w, load, replications, None, b_pods
    )
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
        pods=(
            {"canary": c_by_pod, "baseline": b_by_pod}
            if c_by_pod is not None and b_by_pod is not None
            else None
        ),
    )
