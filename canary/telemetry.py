"""canary's own metrics (prometheus-client), served by the API's `/metrics`.

Everything is registered on `REGISTRY` (not the process-global default registry), so
the API can expose exactly these and tests can read them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "DRIFT",
    "EVIDENCE",
    "LATENESS_SECONDS",
    "QUERY_SECONDS",
    "REGISTRY",
    "ROUNDS",
    "ROUNDS_SKIPPED",
    "ROUND_SECONDS",
    "WEIGHT",
    "observe_judgement",
    "watch_store",
]

log = logging.getLogger(__name__)

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
DRIFT = Counter(
    "canary_traffic_drift",
    "Weight changes refused because someone else changed the weights (the analysis halts).",
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


class StoreCollector(Collector):
    """Gauges read from the store at scrape time: analyses by canary, status and verdict,
    and how far each running analysis' next round is overdue (a stuck analysis)."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # no query at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from datetime import UTC, datetime

        from canary.store.database import StoreFailure
        from canary.store.reads import analysis_counts, next_rounds_due

        analyses = GaugeMetricFamily(
            "canary_analyses",
            "Stored analyses by canary, status and verdict.",
            labels=["canary", "status", "verdict"],
        )
        overdue = GaugeMetricFamily(
            "canary_analysis_round_overdue_seconds",
            "How long a running analysis' next scheduled round is overdue (0 when on time).",
            labels=["canary"],
        )
        up = GaugeMetricFamily("canary_store_up", "1 when the store answered this scrape.")
        try:
            with self.sessions() as session:
                counts = analysis_counts(session)
                due = next_rounds_due(session)
        except StoreFailure as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        now = datetime.now(UTC)
        for canary, status, verdict, count in counts:
            analyses.add_metric([canary, status, verdict], float(count))
        for canary, next_round in due:
            if next_round.tzinfo is None:
                next_round = next_round.replace(tzinfo=UTC)
            overdue.add_metric([canary], max(0.0, (now - next_round).total_seconds()))
        up.add_metric([], 1.0)
        yield from (analyses, overdue, up)


_store_collector: StoreCollector | None = None


def watch_store(sessions: Any) -> None:
    """Export the store gauges (`StoreCollector`) on `REGISTRY` from these sessions
    (None: stop exporting them)."""
    global _store_collector
    if _store_collector is not None:
        REGISTRY.unregister(_store_collector)
        _store_collector = None
    if sessions is not None:
        _store_collector = StoreCollector(sessions)
        REGISTRY.register(_store_collector)
