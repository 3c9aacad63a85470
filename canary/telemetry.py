"""canary's own metrics (prometheus-client), served by the API's `/metrics`.

Everything is registered on `REGISTRY` (not the process-global default registry), so
the API can expose exactly these and tests can read them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "EVIDENCE",
    "LATENESS_SECONDS",
    "QUERY_SECONDS",
    "REGISTRY",
    "ROUNDS",
    "ROUNDS_SKIPPED",
    "ROUND_SECONDS",
    "WEIGHT",
    "observe_judgement",
]

REGISTRY = CollectorRegistry(auto_describe=True)

ROUNDS = Counter(
    "canary_rounds_total",
    "Analysis rounds run, by canary and outcome (the round's decision, warmup or error).",
    ["canary", "outcome"],
    registry=REGISTRY,
)
ROUNDS_SKIPPED = Counter(
    "canary_rounds_skipped_total",
    "Scheduled rounds skipped because the analysis' previous round was still running.",
    registry=REGISTRY,
)
ROUND_SECONDS = Histogram(
    "canary_round_duration_seconds",
    "Wall time of one round: collect, judge, decide, persist, act (all canaries).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
QUERY_SECONDS = Histogram(
    "canary_query_duration_seconds",
    "Wall time of one round's Prometheus collection, all its queries (all canaries).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LATENESS_SECONDS = Histogram(
    "canary_round_lateness_seconds",
    "How late a scheduled round started relative to its scheduled time.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
WEIGHT = Gauge(
    "canary_weight_percent",
    "The canary weight the daemon last set (0-100).",
    ["canary"],
    registry=REGISTRY,
)
EVIDENCE = Gauge(
    "canary_evidence",
    "Latest evidence per metric: log e-value (sequential judge) or score, by kind.",
    ["canary", "metric", "kind"],
    registry=REGISTRY,
)


def observe_judgement(canary: str, judgement: object) -> None:
    """Export the numeric statistics of each metric's latest result as evidence gauges."""
    metrics = getattr(judgement, "metrics", None) or {}
    for name, result in metrics.items():
        for key, value in (getattr(result, "statistics", None) or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if key.startswith(("log_e", "e_", "score")) or key in ("e_fail", "e_pass"):
                EVIDENCE.labels(canary=canary, metric=name, kind=key).set(float(value))
