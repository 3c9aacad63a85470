"""Fixtures of the API tests: a backfilled Prometheus with Argo-style pods, a config,
a pinned clock, and a real uvicorn server over `create_app`.

The scenarios (namespace `shop`, 20 requests/s per arm, rounds of 60 s of data):
- `steady`: canary and stable both answer 2% 5xx -> PASS after 4 judged rounds;
- `broken`: canary 20% 5xx, stable 1% -> FAIL at the first judged round;
- `quiet`: no errors on either side (no evidence) with max_rounds = 3 -> running,
  then INCONCLUSIVE at the budget.
Every workload also has pods of an older ReplicaSet (hash `old`) answering 50% 5xx:
they only stay out of the judgement if the pod-template-hash matchers work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_harness import ApiServer
from prometheus_harness import (
    ArmTraffic,
    OpenMetricsWriter,
    PrometheusServer,
    backfill,
)

from canary.api.app import AppContext, create_app
from canary.config import Config, parse_config
from canary.metrics.source import PrometheusSource
from canary.store.database import connect, migrate, sessions

NAMESPACE = "shop"
TOKEN = "test-token-0123456789"
STEP = 10  # seconds between backfilled samples
ROUND = 60  # the canaries' interval

#: service -> (canary error ratio, stable error ratio, canary hash, stable hash)
SCENARIOS = {
    "steady": (0.02, 0.02, "6d4f8b7c9a", "5b8c7d6e4f"),
    "broken": (0.20, 0.01, "7e5c9d8b6a", "4a7b6c5d3e"),
    "quiet": (0.0, 0.0, "8f6d5e9c7b", "3c6d5e4f2a"),
}
OLD_HASH = "9a8b7c6d5e"


def pods(service: str, pod_hash: str) -> list[str]:
    """Three pods per ReplicaSet. Requests go round-robin and every k-th fails; with
    three pods the failures rotate over the pods for every ratio used here (with two,
    a 1% or 2% ratio would put every failure on one pod, and the judge would rightly
    read the baseline's pods as wildly different)."""
    return [f"{service}-{pod_hash}-{suffix}" for suffix in ("x7k2p", "b9m4q", "c3n8r")]


@dataclass
class Backfilled:
    prometheus: PrometheusServer
    start: float  # the first round boundary (unix seconds), data from start - 300


def _write(start: float, minutes: int) -> tuple[str, int]:
    writer = OpenMetricsWriter()
    arms = []
    for service, (c_ratio, s_ratio, c_hash, s_hash) in SCENARIOS.items():
        arms.append(ArmTraffic(NAMESPACE, service, pods(service, c_hash), "v2", 20.0, c_ratio))
        arms.append(ArmTraffic(NAMESPACE, service, pods(service, s_hash), "v1", 20.0, s_ratio))
        arms.append(ArmTraffic(NAMESPACE, service, pods(service, OLD_HASH), "v0", 20.0, 0.5))
    t = start - 300
    while t <= start + minutes * 60:
        for arm in arms:
            arm.advance(STEP)
            writer.add_all(arm.samples(), t)
        t += STEP
    return writer.text(), writer.samples


@pytest.fixture(scope="session")
def backfilled(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backfilled]:
    """One Prometheus over 20 minutes of the three scenarios, inside one 2-hour block."""
    block = 7200
    start = (int(time.time()) // block) * block - 3 * block + 600
    text, samples = _write(start, 15)
    data = tmp_path_factory.mktemp("api-prometheus") / "data"
    backfill(text, data, expected_samples=samples)
    server = PrometheusServer(data).start()
    try:
        yield Backfilled(server, float(start))
    finally:
        server.stop()


def canary_table(service: str, **settings: Any) -> dict[str, Any]:
    match = {"destination_workload": service}
    return {
        "name": service,
        "namespace": NAMESPACE,
        "traffic": {
            "virtual_service": service,
            "canary": {"host": f"{service}-canary"},
            "stable": {"host": f"{service}-stable"},
        },
        "arms": {"canary": {"match": match}, "baseline": {"match": dict(match)}},
        **settings,
    }


def make_config(prometheus_url: str, **prometheus: Any) -> Config:
    return parse_config(
        {
            "prometheus": {"url": prometheus_url, "timeout": "5s", "retries": 0, **prometheus},
            "server": {"max_body_bytes": 4096},
            "defaults": {
                "interval": f"{ROUND}s",
                "max_duration": "2h",
                "metrics": [{"name": "errors", "kind": "counts", "min_requests": 100}],
            },
            "canary": [
                canary_table("steady"),
                canary_table("broken"),
                canary_table("quiet", max_rounds=3),
            ],
        }
    )


class Clock:
    """A pinned UTC clock the tests move forward (rounds query Prometheus at it)."""

    def __init__(self, start: float) -> None:
        self.now = datetime.fromtimestamp(start, UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    engine = connect(url)
    migrate(engine)
    engine.dispose()
    return url


def serve(
    database_url: str,
    config: Config,
    clock: Clock | None = None,
    *,
    round_timeout: float = 8.0,
    source: Any = "prometheus",
    auth: bool = True,
) -> ApiServer:
    """A started server over a new engine (a fresh process, as far as the API knows)."""
    context = AppContext(
        config=config,
        sessions=sessions(connect(database_url)),
        source=PrometheusSource(config.prometheus) if source == "prometheus" else source,
        tokens=[TOKEN],
        auth=auth,
        round_timeout=round_timeout,
        **({"clock": clock} if clock else {}),
    )
    return ApiServer(create_app(context)).start()


def template_args(server: ApiServer, service: str, **extra: str) -> dict[str, str]:
    _, _, c_hash, s_hash = SCENARIOS[service]
    return {
        "canary": service,
        "canary-hash": c_hash,
        "stable-hash": s_hash,
        "canary-url": server.url,
        "api-token": TOKEN,
        **extra,
    }
