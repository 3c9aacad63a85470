"""Live scraping: an Istio-like exporter scraped every second by a real Prometheus."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from prometheus_harness import (
    LiveStack,
)

from canary.config import PrometheusConfig, parse_config
from canary.metrics.collect import collect_round
from canary.metrics.prometheus import PrometheusClient
from canary.model import Counts


def test_live_round_counts_exactly_what_the_exporter_served(live_stack: LiveStack) -> None:
    stack = live_stack
    config = parse_config(
        {
            "canary": [
                {
                    "name": "app",
                    "namespace": stack.namespace,
                    "interval": 5,
                    "traffic": {
                        "virtual_service": "app",
                        "canary": {"host": "app-canary"},
                        "stable": {"host": "app-primary"},
                    },
                    "arms": {
                        "canary": {"match": {"destination_workload": "app-canary"}},
                        "baseline": {"match": {"destination_workload": "app-primary"}},
                    },
                }
            ]
        }
    ).canary[0]

    async def snapshot(previous):  # type: ignore[no-untyped-def]
        async with PrometheusClient(PrometheusConfig(url=stack.prometheus.url)) as client:
            return await collect_round(client, config, datetime.now(UTC), previous)

    stack.exporter.pause()
    stack.wait_scraped()
    _, first = asyncio.run(snapshot(None))
    before = stack.exporter.totals()

    stack.exporter.configure("canary", rate=60.0, error_ratio=0.2, latency_ms=300.0)
    stack.exporter.configure("baseline", rate=60.0, error_ratio=0.02, latency_ms=30.0)
    time.sleep(3.0)
    stack.exporter.pause()
    stack.wait_scraped()
    data, _ = asyncio.run(snapshot(first))
    after = stack.exporter.totals()
    stack.reset_traffic()

    assert data.error is None
    for arm in ("canary", "baseline"):
        served = after[arm][0] - before[arm][0]
        failed = after[arm][1] - before[arm][1]
        assert served > 100
        observed = data.canary if arm == "canary" else data.baseline
        assert observed["errors"] == Counts(served, failed), arm
        assert observed["latency"].total == served
    assert data.canary["errors"].failed > 5 * data.baseline["errors"].failed
    assert data.canary["latency"].exceeding(250.0).failed > 0
    assert data.baseline["latency"].exceeding(250.0).failed == 0
