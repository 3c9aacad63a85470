"""Ambient mode: waypoint-shaped metrics scraped by a real Prometheus.

In ambient mode the HTTP metrics come from waypoint proxies (``reporter="waypoint"``)
and the scraped ``pod`` is the waypoint's. canary keys each series by waypoint pod,
destination workload and revision (canary/metrics/series_keys.py), detects resets per
waypoint and tells the arms apart by destination labels. The same traffic shaped as
sidecar metrics and as waypoint metrics must give the same rounds and verdicts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from metrics_scenarios import BOUNDARIES, ROUND_SECONDS, Expected, Scenario, ambient_twins
from prometheus_harness import (
    ENVOY_BUCKETS,
    WAYPOINTS,
    LiveStack,
    OpenMetricsWriter,
    PrometheusServer,
    backfill,
)

from canary.config import CanaryConfig, PrometheusConfig, parse_config
from canary.errors import ConfigError
from canary.judge import judge_rounds, make_judge
from canary.metrics.collect import collect_round, traced_deltas
from canary.metrics.prometheus import PrometheusClient
from canary.metrics.queries import load_templates
from canary.metrics.series_keys import SeriesKeys
from canary.model import Counts, Histogram, Verdict


def config(
    namespace: str, *, interval: float = ROUND_SECONDS, judge: str = "sequential", **extra: Any
) -> CanaryConfig:
    sequential = {"min_requests": 200} if judge == "sequential" else {}
    raw = {
        "name": "app",
        "namespace": namespace,
        "interval": interval,
        "judge": judge,
        "traffic": {
            "kind": "HTTPRoute",
            "http_route": "app",
            "canary": {"host": "app-canary"},
            "stable": {"host": "app-primary"},
        },
        "arms": {
            "canary": {"match": {"destination_workload": "app-canary"}},
            "baseline": {"match": {"destination_workload": "app-primary"}},
        },
        "metrics": [
            {"name": "errors", "kind": "counts", **sequential},
            {"name": "latency", "kind": "histogram", **sequential},
        ],
        **extra,
    }
    return parse_config({"canary": [raw]}).canary[0]


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# --------------------------------------------------------------------------- live


def test_live_waypoint_round_counts_exactly_across_a_restart_and_a_scale_out(
    ambient_stack: LiveStack,
) -> None:
    stack = ambient_stack
    canary = config(stack.namespace, interval=5, reporter="waypoint", scrape_interval=1)

    async def snapshot(previous):  # type: ignore[no-untyped-def]
        async with PrometheusClient(PrometheusConfig(url=stack.prometheus.url)) as client:
            return await collect_round(client, canary, datetime.now(UTC), previous)

    stack.exporter.pause()
    stack.wait_scraped()
    _, first = asyncio.run(snapshot(None))
    before = stack.exporter.totals()

    # one canary request in 5 fails: the failures alternate between the two waypoints
    stack.exporter.configure("canary", rate=60.0, error_ratio=0.2, latency_ms=300.0)
    stack.exporter.configure("baseline", rate=60.0, error_ratio=0.01, latency_ms=30.0)
    time.sleep(1.5)
    # Prometheus scrapes the waypoint's last counters, then the waypoint restarts: both
    # arms' series start over and climb back above their old values within the round
    stack.exporter.pause()
    stack.wait_scraped()
    stack.exporter.restart_waypoint(WAYPOINTS[1])
    stack.exporter.configure("canary", rate=120.0, error_ratio=0.0)
    stack.exporter.configure("baseline", rate=120.0)
    time.sleep(1.5)
    stack.exporter.pause()
    stack.wait_scraped()  # the restarted waypoint's 200 series are back, its 503 not yet
    stack.exporter.configure("canary", rate=120.0, error_ratio=0.2)
    stack.exporter.configure("baseline", rate=120.0)
    stack.exporter.add_waypoint("waypoint-7d9f-2")  # scale-out inside the round
    time.sleep(1.5)
    stack.exporter.pause()
    stack.wait_scraped()
    data, second = asyncio.run(snapshot(first))
    after = stack.exporter.totals()
    stack.reset_traffic()

    assert data.error is None, data.error
    for arm in ("canary", "baseline"):
        served = after[arm][0] - before[arm][0]
        failed = after[arm][1] - before[arm][1]
        assert served > 200
        observed = data.canary if arm == "canary" else data.baseline
        assert observed["errors"] == Counts(served, failed), arm
        assert observed["latency"].total == served
    assert data.canary["errors"].failed > 5 * data.baseline["errors"].failed
    # the per-pod evidence: standard waypoint metrics name no destination pod
    assert data.pods == {}
    assert any("no per-pod evidence" in note for note in second["notes"])
    # the stored series are keyed by waypoint and destination
    stored = second["metrics"]["errors"]["arms"]["canary"]["pods"]
    assert sorted(stored) == [
        f'["{pod}","app-canary","v2"]' for pod in (*WAYPOINTS, "waypoint-7d9f-2")
    ]


def test_live_waypoint_queries_select_arms_by_destination(
    ambient_stack: LiveStack,
) -> None:
    canary = config(ambient_stack.namespace, interval=5, reporter="waypoint")
    templates = load_templates(None)
    from canary.metrics.collect import _plans

    queries = [p.query for p in _plans(canary, templates)]
    requests = next(q for q in queries if "istio_requests_total" in q)
    assert 'reporter="waypoint"' in requests
    assert "sum by (pod, destination_workload, destination_canonical_revision, response_code)" in (
        requests
    )
    result = ambient_stack.prometheus.query(requests, time.time())
    assert {r["metric"]["destination_workload"] for r in result} <= {"app-canary", "app-primary"}
    assert {r["metric"]["pod"] for r in result} >= set(WAYPOINTS)


# --------------------------------------------------------------------------- twins


@pytest.fixture(scope="module")
def twins(
    prometheus_bin: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrometheusServer, dict[str, tuple[Scenario, Expected]]]]:
    writer = OpenMetricsWriter()
    generated = {}
    for scenario in ambient_twins():
        generated[scenario.namespace] = (scenario, scenario.generate(writer))
    data_dir = tmp_path_factory.mktemp("twins") / "data"
    backfill(writer.text(), data_dir, expected_samples=writer.samples)
    server = PrometheusServer(data_dir).start()
    try:
        yield server, generated
    finally:
        server.stop()


async def _collect(url: str, canary: CanaryConfig) -> list:
    rounds, snapshots = [], []
    async with PrometheusClient(PrometheusConfig(url=url)) as client:
        snapshot = None
        for boundary in BOUNDARIES:
            data, snapshot = await collect_round(client, canary, at(boundary), snapshot)
            assert data.error is None, data.error
            rounds.append(data)
            snapshots.append(snapshot)
    return rounds


def test_ambient_and_sidecar_shapes_of_the_same_traffic_give_the_same_rounds_and_verdicts(
    twins: tuple[PrometheusServer, dict[str, tuple[Scenario, Expected]]],
) -> None:
    server, generated = twins
    shapes: dict[str, dict[str, Any]] = {
        "twin-sidecar": {},
        "twin-ambient": {"reporter": "waypoint"},
        "twin-ambient-pods": {"reporter": "waypoint", "destination_pod_label": "destination_pod"},
    }
    configs = {ns: config(ns, **shape) for ns, shape in shapes.items()}
    rounds = {ns: asyncio.run(_collect(server.url, c)) for ns, c in configs.items()}
    _, expected = generated["twin-ambient"]
    for ns in configs:  # the generator's own accounting: one traffic, three shapes
        assert generated[ns][1] == expected

    # every round: the same exact counts and buckets per arm, whatever the shape
    for index in range(len(BOUNDARIES) - 1):
        for arm in ("canary", "baseline"):
            total, failed = expected.counts(index, arm)
            want = Histogram(bounds=ENVOY_BUCKETS, buckets=tuple(expected.buckets[index][arm]))
            for ns, shape in rounds.items():
                data = shape[index + 1]
                observed = data.canary if arm == "canary" else data.baseline
                assert observed["errors"] == Counts(total, failed), (ns, index + 1, arm)
                assert observed["latency"] == want, (ns, index + 1, arm)
    # per-pod evidence: the workload pods where the metrics name them, none otherwise
    sidecar, ambient, with_pods = (rounds[ns][1:] for ns in configs)
    for side, amb, pods in zip(sidecar, ambient, with_pods, strict=True):
        assert pods.pods == side.pods and side.pods
        assert amb.pods == {}

    def verdicts(judge_name: str, ns: str) -> list[tuple[Verdict, int | None]]:
        canary = config(ns, judge=judge_name, **shapes[ns])
        judge = make_judge(judge_name, canary.metrics, canary.settings())
        return [(j.verdict, j.round) for j in judge_rounds(judge, rounds[ns][1:])]

    for name in ("sequential", "mann_whitney"):
        assert verdicts(name, "twin-ambient-pods") == verdicts(name, "twin-sidecar"), name
    assert verdicts("sequential", "twin-sidecar")[-1][0] is Verdict.FAIL
    # without destination pods the request-level evidence is the same, the pod-level
    # spread is unknown: the worse canary is still caught
    assert verdicts("mann_whitney", "twin-ambient") == verdicts("mann_whitney", "twin-sidecar")
    assert Verdict.FAIL in {v for v, _ in verdicts("sequential", "twin-ambient")}


# --------------------------------------------------------------------------- traced deltas


def _waypoint(series: str) -> str:
    return series.split("/")[0]


def test_a_series_back_late_after_a_restart_does_not_restart_its_waypoint_again() -> None:
    # Envoy drops a restarted waypoint's 503 series until its next 503: it comes back
    # two scrapes after the 200 series dropped, still the same restart
    previous = {("wp-1/app", "200"): (1064, 0.0), ("wp-1/app", "503"): (244, 0.0)}
    traces = {
        ("wp-1/app", "200"): [(1, 1064), (2, 1089), (3, 1109), (4, 53), (5, 105), (6, 145)],
        ("wp-1/app", "503"): [(1, 244), (2, 244), (3, 244), (6, 1)],
    }
    current = {("wp-1/app", "200"): 151, ("wp-1/app", "503"): 2}
    deltas, kept = traced_deltas(previous, current, traces, at=7.0, base={}, owner=_waypoint)
    assert deltas == {("wp-1/app", "200"): (1109 - 1064) + 151, ("wp-1/app", "503"): 2}
    assert kept == {key: (value, 7.0) for key, value in current.items()}


def test_two_restarts_in_a_round_are_both_counted_around_a_series_absent_across_them() -> None:
    previous = {("wp-0/app", "200"): (100, 0.0), ("wp-0/app", "503"): (7, 0.0)}
    traces = {
        ("wp-0/app", "200"): [(1, 110), (2, 5), (3, 20), (4, 3), (5, 9)],
        ("wp-0/app", "503"): [(1, 7)],
    }
    current = {("wp-0/app", "200"): 12, ("wp-0/app", "503"): 2}
    deltas, _ = traced_deltas(previous, current, traces, at=6.0, base={}, owner=_waypoint)
    assert deltas == {("wp-0/app", "200"): 10 + 5 + 15 + 3 + 6 + 3, ("wp-0/app", "503"): 2}


# --------------------------------------------------------------------------- config


def test_ambient_arms_cannot_select_by_the_waypoint_pod() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "canary": [
                    {
                        "name": "app",
                        "namespace": "ns",
                        "reporter": "waypoint",
                        "traffic": {
                            "virtual_service": "app",
                            "canary": {"host": "a"},
                            "stable": {"host": "b"},
                        },
                        "arms": {
                            "canary": {"match_regex": {"pod": "app-canary-.*"}},
                            "baseline": {"match": {"destination_workload": "app-primary"}},
                        },
                    }
                ]
            }
        )
    ((path, message),) = info.value.problems
    assert path == "canary[0]"
    assert (
        "arms.canary: with reporter = 'waypoint' the 'pod' label is the waypoint's pod" in message
    )


def test_series_keys_of_each_mode() -> None:
    sidecar = SeriesKeys.of(config("ns"))
    assert (sidecar.grouping, sidecar.series({"pod": "p-0"}), sidecar.owner("p-0")) == (
        "pod",
        "p-0",
        "p-0",
    )
    ambient = SeriesKeys.of(config("ns", reporter="waypoint"))
    labels = {"pod": "wp-0", "destination_workload": 'a"b', "destination_canonical_revision": "v2"}
    series = ambient.series(labels)
    assert series == '["wp-0","a\\"b","v2"]'
    assert ambient.owner(series) == "wp-0" and ambient.evidence_pod(series) is None
    assert ambient.series({"pod": "wp-0"}) is None  # missing destination labels
    with_pod = SeriesKeys.of(
        config("ns", reporter="waypoint", destination_pod_label="destination_pod")
    )
    series = with_pod.series({**labels, "destination_pod": "app-canary-0"})
    assert with_pod.evidence_pod(series) == "app-canary-0"
    assert with_pod.grouping == (
        "pod, destination_workload, destination_canonical_revision, destination_pod"
    )
