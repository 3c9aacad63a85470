"""Benchmark: the daemon running 1,000 concurrent analyses at a 30 s interval.

    python bench/daemon_scale.py [--analyses 1000] [--interval 30] [--measure 120]
                                 [--workloads 20] [--database-url URL]

Starts an Istio-like exporter (a separate process: `--workloads` canary/baseline
workload pairs, 2 pods each) scraped every 5 s by Debian's Prometheus 2.42, starts
N analyses (one long step so every analysis keeps running), then runs the real
`canary.daemon.Daemon` in this process: APScheduler jobs, leases, the shared
Prometheus client, the sequential judge, the store (SQLite by default), the
in-memory router. After one interval of warm-up (first rounds spread over it) it
measures for `--measure` seconds and prints:

- round lateness (start of a round minus its scheduled time) p50 / p99 / max;
- rounds completed per second, round errors;
- the daemon process' CPU (user+sys seconds per wall second, over the measurement)
  and resident memory (current and peak, MB).

Targets: lateness p99 < 1 s, no skipped round, memory < 250 MB, on this 2-core machine.
The exporter and Prometheus run in their own processes and are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from prometheus_harness import PrometheusServer, wait_for_series  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from canary import control, telemetry  # noqa: E402
from canary.config import parse_config  # noqa: E402
from canary.daemon import Daemon  # noqa: E402
from canary.store.database import connect, migrate  # noqa: E402
from canary.store.database import sessions as make_sessions  # noqa: E402
from canary.store.tables import Round, utcnow  # noqa: E402

EXPORTER = """
import sys, time
sys.path.insert(0, {tests!r})
from prometheus_harness import ArmTraffic, IstioExporter
arms = {{}}
for i in range({workloads}):
    for arm, rev in (("canary", "v2"), ("primary", "v1")):
        name = f"w{{i}}-{{arm}}"
        arms[name] = ArmTraffic("bench", name, [f"{{name}}-0", f"{{name}}-1"], rev, 20.0,
                                error_ratio=0.02)
exporter = IstioExporter(arms, tick=0.5).start()
print(exporter.target, flush=True)
while True:
    time.sleep(3600)
"""


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB, from /proc."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def config_for(args: argparse.Namespace, prometheus_url: str):  # type: ignore[no-untyped-def]
    canaries = []
    for i in range(args.analyses):
        w = i % args.workloads
        canaries.append(
            {
                "name": f"c{i:04d}",
                "namespace": "bench",
                "interval": args.interval,
                "steps": [{"weight": 10, "duration": 36000}],
                "max_duration": 72000,
                "traffic": {
                    "virtual_service": f"c{i:04d}",
                    "canary": {"host": f"c{i:04d}", "subset": "canary"},
                    "stable": {"host": f"c{i:04d}", "subset": "stable"},
                },
                "arms": {
                    "canary": {"match": {"destination_workload": f"w{w}-canary"}},
                    "baseline": {"match": {"destination_workload": f"w{w}-primary"}},
                },
            }
        )
    return parse_config(
        {
            "prometheus": {"url": prometheus_url, "timeout": 10, "max_concurrency": 16},
            "kubernetes": {"mode": "memory"},
            "canary": canaries,
        }
    )


async def measure(args: argparse.Namespace, config, sessions) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from canary.metrics.prometheus import PrometheusClient
    from canary.metrics.source import PrometheusSource

    client = PrometheusClient(config.prometheus, record_latencies=True)
    source = PrometheusSource(config.prometheus, client=client)
    daemon = Daemon(config, sessions, source=source, sync_interval=5.0, lease_ttl=60.0)
    task = asyncio.create_task(daemon.run())
    began = time.monotonic()
    while daemon.scheduled_count() < args.analyses:  # the first sync applies 1,000 starts
        await asyncio.sleep(1)
    print(
        f"all analyses scheduled after {time.monotonic() - began:.1f} s; warm-up: "
        f"{args.interval:.0f} s (first rounds spread over one interval)"
    )
    await asyncio.sleep(args.interval + 5)
    daemon.lateness.clear()
    client.stats.latencies.clear()
    sums0 = _sums()
    cpu0, wall0, t0 = cpu_seconds(), time.monotonic(), utcnow()
    skipped0 = daemon.skipped
    errors0 = _errors()
    print(f"measuring for {args.measure:.0f} s ...")
    await asyncio.sleep(args.measure)
    wall = time.monotonic() - wall0
    cpu = cpu_seconds() - cpu0
    with sessions.begin() as session:
        rounds = session.scalar(
            select(func.count()).select_from(Round).where(Round.recorded_at >= t0)
        )
    lateness = list(daemon.lateness)
    current, peak = rss_mb()
    sums = {k: (v[0] - sums0[k][0], v[1] - sums0[k][1]) for k, v in _sums().items()}
    queries = list(client.stats.latencies)
    daemon.stop()
    await task
    return {
        "rounds": rounds,
        "rounds_per_s": rounds / wall,
        "expected_per_s": args.analyses / args.interval,
        "lateness_p50": percentile(lateness, 0.5) if lateness else float("nan"),
        "lateness_p99": percentile(lateness, 0.99) if lateness else float("nan"),
        "lateness_max": max(lateness) if lateness else float("nan"),
        "lateness_n": len(lateness),
        "cpu_per_s": cpu / wall,
        "rss_mb": current,
        "peak_rss_mb": peak,
        "errors": _errors() - errors0,
        "skipped": daemon.skipped - skipped0,
        "total_s": time.monotonic() - began,
        "round_mean": sums["round"][0] / max(1, sums["round"][1]),
        "collect_mean": sums["query"][0] / max(1, sums["query"][1]),
        "query_p50": percentile(queries, 0.5) if queries else float("nan"),
        "query_p99": percentile(queries, 0.99) if queries else float("nan"),
        "queries_per_s": len(queries) / wall,
    }


def _sums() -> dict[str, tuple[float, float]]:
    """(sum, count) of the round and collection duration histograms."""
    out = {}
    for key, name in (
        ("round", "canary_round_duration_seconds"),
        ("query", "canary_query_duration_seconds"),
    ):
        total = telemetry.REGISTRY.get_sample_value(f"{name}_sum") or 0.0
        count = telemetry.REGISTRY.get_sample_value(f"{name}_count") or 0.0
        out[key] = (total, count)
    return out


def _errors() -> float:
    """Error rounds so far (queries failed), from the daemon's own counter."""
    total = 0.0
    for metric in telemetry.REGISTRY.collect():
        if metric.name == "canary_rounds":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels.get("outcome") == "error":
                    total += sample.value
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--analyses", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--measure", type=float, default=120.0)
    parser.add_argument("--workloads", type=int, default=20)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the children
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # skipped runs are counted

    work = Path(tempfile.mkdtemp(prefix="canary-daemon-scale-"))
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            EXPORTER.format(tests=str(ROOT / "tests"), workloads=args.workloads),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    prometheus = None
    try:
        target = exporter.stdout.readline().strip()  # type: ignore[union-attr]
        prometheus = PrometheusServer(
            work / "data", scrape_targets=[target], scrape_interval="5s"
        ).start()
        wait_for_series(prometheus, "istio_requests_total", timeout=60)
        url = args.database_url or f"sqlite:///{work / 'canary.db'}"
        engine = connect(url)
        migrate(engine)
        sessions = make_sessions(engine)
        config = config_for(args, prometheus.url)
        started = time.monotonic()
        for canary in config.canary:
            control.start_analysis(sessions, config, canary.name)
        print(
            f"{args.analyses} analyses started in {time.monotonic() - started:.1f} s "
            f"({url.split(':')[0]}), interval {args.interval:g} s"
        )
        result = asyncio.run(measure(args, config, sessions))
        engine.dispose()
    finally:
        if prometheus is not None:
            prometheus.stop()
        exporter.kill()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"rounds: {result['rounds']} in the measurement "
        f"({result['rounds_per_s']:.1f}/s, expected {result['expected_per_s']:.1f}/s), "
        f"error rounds: {result['errors']:.0f}, skipped (previous round still running): "
        f"{result['skipped']}"
    )
    print(
        f"lateness: p50 {result['lateness_p50'] * 1000:.0f} ms, "
        f"p99 {result['lateness_p99'] * 1000:.0f} ms, "
        f"max {result['lateness_max'] * 1000:.0f} ms (n={result['lateness_n']})  [target p99 < 1 s]"
    )
    print(
        f"round wall time: mean {result['round_mean'] * 1000:.0f} ms, of which collection "
        f"{result['collect_mean'] * 1000:.0f} ms; Prometheus queries "
        f"{result['queries_per_s']:.0f}/s, latency p50 {result['query_p50'] * 1000:.0f} ms, "
        f"p99 {result['query_p99'] * 1000:.0f} ms"
    )
    print(
        f"daemon CPU: {result['cpu_per_s'] * 100:.0f}% of one core; "
        f"RSS {result['rss_mb']:.0f} MB (peak {result['peak_rss_mb']:.0f} MB)  [target < 250 MB]; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    ok = result["lateness_p99"] < 1.0 and result["peak_rss_mb"] < 250 and not result["skipped"]
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
