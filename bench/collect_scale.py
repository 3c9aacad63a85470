"""Benchmark: collection rounds for 1,000 canaries x 2 metrics from a real Prometheus.

    python bench/collect_scale.py [--canaries 1000] [--pods 10] [--concurrency 16]
                                  [--reporter destination|waypoint] [--data-dir DIR]
                                  [--curve]

Backfills Istio-like counters for N canaries (canary + baseline arms, `--pods` pods
each; per pod `istio_requests_total` for 200 and 503 and the 20 Envoy latency
buckets), starts Debian's Prometheus 2.42 over them, then runs, for every canary
concurrently through one shared `PrometheusClient` (its semaphore is the concurrency
limit) exactly as the daemon does: the warm-up round, a full round (every bucket:
the sequential judge's warm-up, which fixes its bounds near p50/p90/p99 of the
baseline), and judged rounds asking only for those buckets and +Inf. Prints the wall
time and CPU (ours and Prometheus') of each round and checks every delta against the
generated counts.

`--curve` prints the cost curve instead: the judged round at 100/300/1,000 canaries
(10 pods) and at 2/10/30 pods (100 canaries), all from one backfilled Prometheus
(so every point queries the same TSDB).

`--reporter waypoint` shapes the same counters as ambient mode's waypoint metrics
(``reporter="waypoint"``, ``pod`` = a waypoint pod, `--pods` waypoints per arm) and
collects with ``reporter = "waypoint"``: each judged round then also reads every
series' in-round trace at the 15 s scrape interval (one more query per metric and arm).

Target: one judged round of all 1,000 canaries x 10 pods in under 5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prometheus_harness import ENVOY_BUCKETS, PrometheusServer, backfill, le_text

from canary.commands._root import settle_heap
from canary.config import PrometheusConfig, parse_config
from canary.judge.sequential import DEFAULT_QUANTILES, choose_bounds
from canary.metrics.collect import collect_round
from canary.metrics.prometheus import PrometheusClient
from canary.model import Counts, Histogram

T0 = 1767225600  # 2026-01-01T00:00:00Z
# warm-up at +60 s, full round at +120 s, judged (narrowed) round at +180 s
SCRAPES = (T0 + 15, T0 + 60, T0 + 75, T0 + 120, T0 + 135, T0 + 180)
WARM_UP, FULL, JUDGED = SCRAPES[1], SCRAPES[3], SCRAPES[5]
NAMESPACE = "bench"


def per_scrape(canary: int, arm: str, pod: int) -> tuple[int, int]:
    """Deterministic requests and failures a pod serves between two scrapes."""
    requests = 40 + (canary * 7 + pod * 3) % 23
    failures = (requests * (3 if arm == "canary" else 1)) // 100 + (pod % 2)
    return requests, failures


REPORTER = "destination"


def generate(path: Path, fleet: dict[int, int]) -> int:
    """Write the OpenMetrics file of `fleet` ({canary index: pods per arm}); returns
    the number of samples."""
    samples = 0
    with path.open("w") as out:
        for family, kind in (
            ("istio_requests", "counter"),
            ("istio_request_duration_milliseconds", "histogram"),
        ):
            out.write(f"# TYPE {family} {kind}\n")
            for c, pods in fleet.items():
                for arm, workload in (
                    ("canary", f"svc{c}-canary"),
                    ("baseline", f"svc{c}-primary"),
                ):
                    revision = "v2" if arm == "canary" else "v1"
                    for p in range(pods):
                        pod = f"waypoint-{c}-{p}" if REPORTER == "waypoint" else f"{workload}-{p}"
                        base = (
                            f'reporter="{REPORTER}",source_workload="frontend",'
                            f'source_workload_namespace="{NAMESPACE}",'
                            f'destination_workload="{workload}",'
                            f'destination_workload_namespace="{NAMESPACE}",'
                            f'destination_service_name="svc{c}",'
                            f'destination_canonical_revision="{revision}",'
                            f'request_protocol="http",response_flags="-",'
                            f'connection_security_policy="mutual_tls",pod="{pod}"'
                        )
                        requests, failures = per_scrape(c, arm, p)
                        if kind == "counter":
                            for code, n in (("200", requests - failures), ("503", failures)):
                                for k, ts in enumerate(SCRAPES, start=1):
                                    out.write(
                                        f'istio_requests_total{{{base},response_code="{code}"}} '
                                        f"{n * k} {ts}\n"
                                    )
                                    samples += 1
                        else:
                            slow = 1 if arm == "canary" else 0
                            for b, bound in enumerate(ENVOY_BUCKETS):
                                share = min(1.0, (b + 1) / (8 + slow * 2))
                                n = requests if bound == float("inf") else int(requests * share)
                                for k, ts in enumerate(SCRAPES, start=1):
                                    out.write(
                                        "istio_request_duration_milliseconds_bucket"
                                        f'{{{base},response_code="200",le="{le_text(bound)}"}} '
                                        f"{n * k} {ts}\n"
                                    )
                                    samples += 1
        out.write("# EOF\n")
    return samples


def config_for(indices: list[int]):  # type: ignore[no-untyped-def]
    raw = {
        "canary": [
            {
                "name": f"svc{c}",
                "namespace": NAMESPACE,
                "interval": 60,
                "reporter": REPORTER,
                "scrape_interval": 15,
                "traffic": {
                    "virtual_service": f"svc{c}",
                    "canary": {"host": f"svc{c}", "subset": "canary"},
                    "stable": {"host": f"svc{c}", "subset": "stable"},
                },
                "arms": {
                    "canary": {"match": {"destination_workload": f"svc{c}-canary"}},
                    "baseline": {"match": {"destination_workload": f"svc{c}-primary"}},
                },
            }
            for c in indices
        ]
    }
    return parse_config(raw).canary


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROMETHEUS_PID: int | None = None


@dataclass
class Timed:
    wall: float
    cpu: float
    prometheus_cpu: float
    latencies: list[float]
    results: list


async def one_round(client, canaries, at, snapshots, bounds=None) -> Timed:  # type: ignore[no-untyped-def]
    client.stats.latencies.clear()
    prometheus_cpu = process_cpu(PROMETHEUS_PID) if PROMETHEUS_PID else 0.0
    cpu = time.process_time()
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            collect_round(client, c, at, snapshots.get(c.name), bounds=(bounds or {}).get(c.name))
            for c in canaries
        )
    )
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    prom = process_cpu(PROMETHEUS_PID) - prometheus_cpu if PROMETHEUS_PID else 0.0
    return Timed(wall, cpu, prom, list(client.stats.latencies), results)


def report(label: str, timed: Timed, canaries: int) -> None:
    latencies = timed.latencies
    print(
        f"{label}: {timed.wall:.2f} s for {canaries} canaries ({len(latencies)} queries) -> "
        f"{canaries / timed.wall:.0f} canary-rounds/s; query latency "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )
    cpu, prom = timed.cpu, timed.prometheus_cpu
    print(
        f"    CPU: canary {cpu:.2f} s, Prometheus {prom:.2f} s; load average "
        f"{os.getloadavg()[0]:.1f} (on 2 otherwise idle cores: about "
        f"{max(cpu, (cpu + prom) / 2):.1f} s)"
    )


def check(timed: Timed, indices: list[int], fleet: dict[int, int], bounds=None) -> None:  # type: ignore[no-untyped-def]
    """Every delta equals the generated counts (2 scrapes of traffic per round)."""
    errors = [data.error for data, _ in timed.results if data.error]
    if errors:
        raise SystemExit(f"{len(errors)} rounds failed, e.g. {errors[0]}")
    for c, (data, _) in zip(indices, timed.results, strict=True):
        for arm, observed in (("canary", data.canary), ("baseline", data.baseline)):
            traffic = [per_scrape(c, arm, p) for p in range(fleet[c])]
            total = sum(r for r, _ in traffic) * 2
            failed = sum(f for _, f in traffic) * 2
            assert observed["errors"] == Counts(total, failed), (c, arm, observed)
            latency = observed["latency"]
            assert latency.total == total, (c, arm)
            slow = 1 if arm == "canary" else 0
            want = []
            for b, bound in enumerate(ENVOY_BUCKETS):
                share = min(1.0, (b + 1) / (8 + slow * 2))
                n = sum(r if bound == float("inf") else int(r * share) for r, _ in traffic) * 2
                want.append((bound, n))
            if bounds is not None:
                keep = set(bounds[f"svc{c}"]["latency"])
                want = [(b, n) for b, n in want if b in keep or b == float("inf")]
            assert latency == Histogram(
                bounds=tuple(b for b, _ in want), buckets=tuple(n for _, n in want)
            ), (c, arm, latency)


async def measure(url: str, indices: list[int], fleet: dict[int, int], concurrency: int,
                  repeats: int, quiet: bool = False) -> Timed:  # fmt: skip
    """Warm-up, full and judged rounds of canaries `indices`; returns the judged round."""
    configs = config_for(indices)
    prometheus = PrometheusConfig(url=url, max_concurrency=concurrency, timeout=30)
    say = (lambda *a: None) if quiet else report
    async with PrometheusClient(prometheus, record_latencies=True) as client:
        at = {t: datetime.fromtimestamp(t, UTC) for t in (WARM_UP, FULL, JUDGED)}
        timed = await one_round(client, configs, at[WARM_UP], {})
        say("warm-up round", timed, len(configs))
        snapshots = {c.name: snap for c, (_, snap) in zip(configs, timed.results, strict=True)}
        timed = await one_round(client, configs, at[FULL], snapshots)
        say("full round (every bucket)", timed, len(configs))
        check(timed, indices, fleet)
        full_snapshots = {c.name: snap for c, (_, snap) in zip(configs, timed.results, strict=True)}
        # The sequential judge fixes its bounds from the baseline of its first round.
        bounds = {
            c.name: {"latency": choose_bounds(data.baseline["latency"], DEFAULT_QUANTILES)}
            for c, (data, _) in zip(configs, timed.results, strict=True)
        }
        for attempt in range(repeats):
            timed = await one_round(client, configs, at[JUDGED], full_snapshots, bounds)
            say(f"judged round #{attempt + 1} (judged buckets only)", timed, len(configs))
            check(timed, indices, fleet, bounds)
        if not quiet:
            print(
                f"checked: every delta equals the generated counts ({len(configs)} canaries x "
                "2 arms x 2 metrics, full and judged rounds)"
            )
        return timed


CURVE = (  # (label, first canary index, canaries, pods)
    ("100 canaries x 10 pods", 0, 100, 10),
    ("300 canaries x 10 pods", 0, 300, 10),
    ("1000 canaries x 10 pods", 0, 1000, 10),
    ("100 canaries x 2 pods", 1000, 100, 2),
    ("100 canaries x 30 pods", 1100, 100, 30),
)


def curve_fleet() -> dict[int, int]:
    fleet: dict[int, int] = {}
    for _, first, count, pods in CURVE:
        for c in range(first, first + count):
            fleet.setdefault(c, pods)
    return fleet


async def print_curve(url: str, fleet: dict[int, int], concurrency: int) -> None:
    print("cost curve (judged round; every delta checked):")
    print(f"  {'fleet':<26} {'wall s':>7} {'canary CPU s':>13} {'Prometheus CPU s':>17} "
          f"{'series':>8} {'load':>5}")  # fmt: skip
    for label, first, count, pods in CURVE:
        indices = list(range(first, first + count))
        timed = await measure(url, indices, fleet, concurrency, 1, quiet=True)
        series = count * 2 * pods * 6  # 2 codes + 3 judged buckets + +Inf per pod
        print(
            f"  {label:<26} {timed.wall:7.2f} {timed.cpu:13.2f} {timed.prometheus_cpu:17.2f} "
            f"{series:8d} {os.getloadavg()[0]:5.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10, help="pods per arm")
    parser.add_argument("--concurrency", type=int, default=16, help="max_concurrency")
    parser.add_argument("--repeats", type=int, default=2, help="judged rounds to time")
    parser.add_argument("--curve", action="store_true", help="print the cost curve")
    parser.add_argument("--data-dir", help="reuse/keep the backfilled TSDB here")
    parser.add_argument(
        "--reporter",
        choices=("destination", "waypoint"),
        default="destination",
        help="sidecar-shaped or waypoint-shaped (ambient mode) counters",
    )
    args = parser.parse_args()
    global REPORTER
    REPORTER = args.reporter

    fleet = curve_fleet() if args.curve else dict.fromkeys(range(args.canaries), args.pods)
    work = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="canary-bench-"))
    name = "curve" if args.curve else f"{args.canaries}x{args.pods}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"data-{name}-{args.reporter}-v2"
    print(f"machine: {os.cpu_count()} CPUs; data in {data}")
    if not data.exists():
        started = time.perf_counter()
        om = work / "bench.om"
        samples = generate(om, fleet)
        print(f"generated {samples} samples in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        backfill_text = om.read_text()
        om.unlink()
        loaded = backfill(backfill_text, data, expected_samples=samples)
        print(f"promtool loaded {loaded} samples in {time.perf_counter() - started:.1f} s")
    server = PrometheusServer(data).start(timeout=120)
    global PROMETHEUS_PID
    PROMETHEUS_PID = server.process.pid if server.process else None
    settle_heap()  # as `canary run` does once started
    try:
        series = server.query('count({__name__=~"istio_.*"})', JUDGED)[0]["value"][1]
        print(f"Prometheus {server.url}: {series} series")
        if args.curve:
            asyncio.run(print_curve(server.url, fleet, args.concurrency))
        else:
            asyncio.run(measure(server.url, list(fleet), fleet, args.concurrency, args.repeats))
    finally:
        server.stop()
        if not args.data_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
