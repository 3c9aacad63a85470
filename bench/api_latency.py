"""Latency of the Argo measurement endpoint under 50 concurrent Argo-like clients.

Setup (all real, on 127.0.0.1): an Istio-like exporter playing the sidecars of
`--canaries` Argo rollouts (two canary and two stable pods each, named
<rollout>-<pod-template-hash>-<suffix>), a Prometheus 2.42 scraping it every second,
and `canary serve` in its own process (SQLite by default, `--database-url` for
PostgreSQL). Every client owns one rollout and calls
GET /api/v1/argo/measure once per `--interval` (the canaries' interval, default
10 s, so every call runs a real round: 4 instant queries, the sequential judge, one
transaction), starting at a random phase.
Next to each measurement the same client times the bare Prometheus instant query
for the canary arm's request counters (one of the four a round asks for in one
request), so both distributions are measured in the same run under the same load.
The two requests go in an order drawn per call: the first after the pause between
calls is slower (the client and the machine are colder), which would otherwise
count against whichever is always first.

    python bench/api_latency.py                  # 50 clients, one call per 10 s each, 60 s
    python bench/api_latency.py --interval 1     # saturation: 50 rounds/s wanted
    python bench/api_latency.py --clients 50 --seconds 60 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Prints p50/p99 of the endpoint (new rounds only, and cached answers separately),
p50/p99 of the bare Prometheus query, both ratios and the server's CPU per round
(every call that ran a round, the first two of each client included). Targets:
endpoint p99 <= 2x and p50 <= 3x the Prometheus query's, <= 8 ms of server CPU per
round. `--curve` prints one line per 10, 50 and 200 clients instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.prometheus_harness import (  # noqa: E402
    ArmTraffic,
    IstioExporter,
    PrometheusServer,
    free_port,
    wait_for_series,
)

NAMESPACE = "bench"
TOKEN = "bench-token"


def hashes(i: int) -> tuple[str, str]:
    return f"c{i:04d}abcd", f"s{i:04d}efgh"


def write_config(
    path: Path, prometheus_url: str, listen: str, canaries: int, interval: float = 1.0
) -> None:
    lines = [
        "[prometheus]",
        f'url = "{prometheus_url}"',
        'timeout = "5s"',
        "max_concurrency = 64",
        "[server]",
        f'listen = "{listen}"',
        'api_token_env = "CANARY_API_TOKEN"',
        # Every client starts its rollout in the first second, all with one token.
        f"new_analyses_per_minute = {max(30, canaries)}",
        "[defaults]",
        f'interval = "{interval:g}s"',
        'max_duration = "1h"',
    ]
    for i in range(canaries):
        name = f"svc{i}"
        lines += [
            "[[canary]]",
            f'name = "{name}"',
            f'namespace = "{NAMESPACE}"',
            "[canary.traffic]",
            f'virtual_service = "{name}"',
            f'canary = {{ host = "{name}-canary" }}',
            f'stable = {{ host = "{name}-stable" }}',
            "[canary.arms.canary]",
            f'match = {{ destination_workload = "{name}" }}',
            "[canary.arms.baseline]",
            f'match = {{ destination_workload = "{name}" }}',
        ]
    path.write_text("\n".join(lines) + "\n")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_exporter(clients: int) -> None:
    """Child process: the Istio-like exporter of every rollout; prints its target."""
    arms = {}
    for i in range(clients):
        c_hash, s_hash = hashes(i)
        pods_c = [f"svc{i}-{c_hash}-{s}" for s in ("k2x7p", "m4b9q")]
        pods_s = [f"svc{i}-{s_hash}-{s}" for s in ("r5t8w", "z3v6n")]
        arms[f"c{i}"] = ArmTraffic(NAMESPACE, f"svc{i}", pods_c, "v2", 10.0, 0.01)
        arms[f"s{i}"] = ArmTraffic(NAMESPACE, f"svc{i}", pods_s, "v1", 10.0, 0.01)
    exporter = IstioExporter(arms, tick=0.2).start()
    print(exporter.target, flush=True)
    while True:
        time.sleep(3600)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def client(
    i: int,
    api: str,
    prometheus: str,
    seconds: float,
    interval: float,
    out: dict[str, list[float]],
) -> None:
    c_hash, s_hash = hashes(i)
    params = {"canary": f"svc{i}", "canaryHash": c_hash, "stableHash": s_hash}
    query = (
        "sum by (pod, response_code) (istio_requests_total{"
        f'reporter="destination", destination_workload_namespace="{NAMESPACE}", '
        f'destination_workload="svc{i}", pod=~".+-{c_hash}-[a-z0-9]{{5}}"}})'
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    calls = 0

    async def measure(http: httpx.AsyncClient) -> bool:
        """Time one measurement; False when the connection failed (no sample then)."""
        nonlocal calls
        calls += 1
        t0 = time.perf_counter()
        try:
            response = await http.get(f"{api}/api/v1/argo/measure", params=params, headers=headers)
        except httpx.TransportError:  # e.g. a keep-alive connection the server closed
            out["errors"].append(time.perf_counter() - t0)
            return False
        elapsed = time.perf_counter() - t0
        body = response.json()
        if response.status_code != 200:
            out["errors"].append(elapsed)
        elif calls <= 2:  # creates the analysis; the warm-up snapshot
            out["first"].append(elapsed)
        elif body.get("stale"):
            out["stale"].append(elapsed)
        elif body.get("newRound"):
            out["round"].append(elapsed)
        else:
            out["cached"].append(elapsed)
        return True

    async def bare(http: httpx.AsyncClient) -> float:
        t0 = time.perf_counter()
        answer = await http.post(
            f"{prometheus}/api/v1/query", data={"query": query, "time": f"{time.time():.3f}"}
        )
        answer.raise_for_status()
        return time.perf_counter() - t0

    order = random.Random(1000 + i)
    async with httpx.AsyncClient(timeout=15) as http:
        await asyncio.sleep(random.Random(i).uniform(0, interval))  # runs start apart
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tick = time.monotonic()
            # Whichever request comes first after the pause finds the client and the
            # machine colder (about 1.4 ms more here), so the order is drawn per call.
            if order.random() < 0.5:
                measured, prometheus_time = await measure(http), await bare(http)
            else:
                prometheus_time, measured = await bare(http), await measure(http)
            if measured:  # as the measurement: no sample over a failed connection
                out["prometheus"].append(prometheus_time)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))


def run_once(clients: int, seconds: float, interval: float, database_url: str | None) -> dict:
    """One run: exporter, Prometheus and `canary serve` started fresh; the latencies."""
    work = Path(tempfile.mkdtemp(prefix="canary-bench-api-"))
    # The exporter runs in its own process so its Python work does not slow the clients.
    exporter = subprocess.Popen(
        [sys.executable, __file__, "--exporter", str(clients)],
        stdout=subprocess.PIPE,
        text=True,
    )
    target = exporter.stdout.readline().strip()  # type: ignore[union-attr]
    prometheus = PrometheusServer(work / "data", scrape_targets=[target]).start()
    server = None
    database = database_url or f"sqlite:///{work / 'canary.db'}"
    try:
        wait_for_series(prometheus, "istio_requests_total", timeout=60)
        port = free_port()
        config = work / "canary.toml"
        write_config(config, prometheus.url, f"127.0.0.1:{port}", clients, interval)
        env = {**os.environ, "CANARY_API_TOKEN": TOKEN, "CANARY_DATABASE_URL": database}
        cli = [sys.executable, "-m", "canary", "--config", str(config), "--log-level", "WARNING"]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        server = subprocess.Popen([*cli, "serve"], env=env, cwd=ROOT)
        api = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{api}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(2)  # a few more scrapes
        out: dict[str, list[float]] = {
            k: [] for k in ("first", "round", "cached", "stale", "errors", "prometheus")
        }

        async def run() -> None:
            await asyncio.gather(
                *(client(i, api, prometheus.url, seconds, interval, out) for i in range(clients))
            )

        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        asyncio.run(run())
        wall = time.perf_counter() - started
        cpu_after = cpu_seconds(server.pid)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        prometheus.stop()
        exporter.terminate()
        exporter.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "out": out,
        "wall": wall,
        "cpu": cpu_after - cpu_before,
        "db": "PostgreSQL" if database.startswith("postgres") else "SQLite",
        "load": os.getloadavg()[0],
    }


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<34} n=0"
    return (
        f"{name:<34} n={len(values):<6d} p50={1000 * statistics.median(values):7.1f} ms  "
        f"p99={1000 * percentile(values, 0.99):7.1f} ms  max={1000 * max(values):7.1f} ms"
    )


def ratios(out: dict[str, list[float]]) -> tuple[float, float]:
    """(p50, p99) of new-round measurements over the bare Prometheus query's."""
    rounds, bare = out["round"], out["prometheus"]
    if not rounds or not bare:
        return float("nan"), float("nan")
    return (
        statistics.median(rounds) / statistics.median(bare),
        percentile(rounds, 0.99) / percentile(bare, 0.99),
    )


def cpu_per_round(result: dict) -> float:
    """Server CPU per call that ran a round (the first two calls of a run included)."""
    out = result["out"]
    return 1000 * result["cpu"] / max(1, len(out["round"]) + len(out["first"]))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--exporter":
        run_exporter(int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument(
        "--interval", type=float, default=10.0, help="the canaries' interval = each client's period"
    )
    parser.add_argument(
        "--curve", action="store_true", help="the cost curve: 10, 50 and 200 clients, one run each"
    )
    args = parser.parse_args()

    if args.curve:
        print(
            f"cost curve: one call per {args.interval:g} s per client, {args.seconds:g} s per "
            "point; p50/p99 of new rounds vs the bare Prometheus query, in the same run"
        )
        print(
            f"  {'clients':>7} {'rounds/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'Prom p50':>8} "
            f"{'Prom p99':>8} {'p50 x':>6} {'p99 x':>6} {'CPU ms/round':>12} {'load':>5} db"
        )
        for clients in (10, 50, 200):
            result = run_once(clients, args.seconds, args.interval, args.database_url)
            out = result["out"]
            p50x, p99x = ratios(out)
            failed = f", {len(out['errors'])} failed calls" if out["errors"] else ""
            print(
                f"  {clients:7d} {len(out['round']) / result['wall']:8.1f} "
                f"{1000 * statistics.median(out['round']):7.1f} "
                f"{1000 * percentile(out['round'], 0.99):7.1f} "
                f"{1000 * statistics.median(out['prometheus']):8.1f} "
                f"{1000 * percentile(out['prometheus'], 0.99):8.1f} {p50x:6.2f} {p99x:6.2f} "
                f"{cpu_per_round(result):12.1f} {result['load']:5.1f} {result['db']}{failed}",
                flush=True,
            )
        return 0

    result = run_once(args.clients, args.seconds, args.interval, args.database_url)
    out = result["out"]
    print(
        f"canary API latency: {args.clients} Argo-like clients, one call per {args.interval:g} s "
        f"each, {result['wall']:.0f} s, {result['db']}"
    )
    print(line("measure (first two calls per run)", out["first"]))
    print(line("measure (new round)", out["round"]))
    print(line("measure (cached, < interval)", out["cached"]))
    print(line("measure (stale, time-boxed)", out["stale"]))
    print(line("measure (non-200)", out["errors"]))
    print(line("bare Prometheus instant query", out["prometheus"]))
    p50x, p99x = ratios(out)
    print(f"p50 ratio endpoint/Prometheus = {p50x:.2f} (target <= 3.0: "
          f"{'met' if p50x <= 3.0 else 'NOT met'})")  # fmt: skip
    print(f"p99 ratio endpoint/Prometheus = {p99x:.2f} (target <= 2.0: "
          f"{'met' if p99x <= 2.0 else 'NOT met'})")  # fmt: skip
    print(f"rounds/s = {len(out['round']) / result['wall']:.1f}")
    per_round = cpu_per_round(result)
    print(
        f"canary serve CPU: {result['cpu']:.1f} s over the run = {per_round:.1f} ms per round "
        f"(target <= 8: {'met' if per_round <= 8 else 'NOT met'}); "
        f"load average {result['load']:.1f} on {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
