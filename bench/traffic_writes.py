"""Benchmark: VirtualService weight writes through the Istio router.

    python bench/traffic_writes.py [--canaries 100] [--writes 5] [--conflict-every 0]

Starts the local Kubernetes API server of the test suite (tests/kubeapi.py: stdlib
HTTP server, real resourceVersion/409 semantics), creates one VirtualService per
canary, and drives every canary through `--writes` weight steps concurrently over
one shared `KubeClient`, as the daemon does in one round. With `--conflict-every K`
a concurrent writer changes an unrelated field before every K-th write, forcing the
409 -> re-read -> re-apply path. Prints the wall time, writes/s, per-write latency
percentiles and the number of attempts; checks every final weight.

There is no target in the issue; this shows the cost of the read + patch (+ event)
per step and of conflict retries. The server is the stdlib test server, so the
figures are an upper bound on client overhead, not a kube-apiserver measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from kubeapi import ISTIO, KubeApiServer, virtual_service

from canary.config import parse_config
from canary.traffic.istio import IstioRouter
from canary.traffic.kube import Connection, KubeClient


def canary(name: str):  # type: ignore[no-untyped-def]
    raw = {
        "canary": [
            {
                "name": name,
                "namespace": "bench",
                "traffic": {
                    "virtual_service": name,
                    "route": "primary",
                    "canary": {"host": name, "subset": "canary"},
                    "stable": {"host": name, "subset": "stable"},
                },
                "arms": {
                    "canary": {"match": {"destination_workload": "c"}},
                    "baseline": {"match": {"destination_workload": "b"}},
                },
            }
        ]
    }
    return parse_config(raw).canary[0]


async def main(args: argparse.Namespace) -> int:
    steps = [10 + 80 * i // max(args.writes - 1, 1) for i in range(args.writes)]
    with KubeApiServer() as api:
        names = [f"svc-{i}" for i in range(args.canaries)]
        for name in names:
            api.create(virtual_service(name, "bench"))
        latencies: list[float] = []
        attempts: list[int] = []
        counter = 0

        def other_writer(name: str):  # type: ignore[no-untyped-def]
            def hook(server: KubeApiServer) -> None:
                server.modify(
                    ISTIO,
                    "virtualservices",
                    "bench",
                    name,
                    lambda vs: vs["metadata"].setdefault("labels", {}).update(touched="yes"),
                )

            return hook

        async with KubeClient(Connection(server=api.url), retries=5) as client:
            routers = [IstioRouter(client, canary(name)) for name in names]

            async def drive(router: IstioRouter) -> None:
                nonlocal counter
                for step, weight in enumerate(steps):
                    counter += 1
                    if args.conflict_every and counter % args.conflict_every == 0:
                        api.before_write.append(other_writer(router.name))
                    started = time.perf_counter()
                    result = await router.set_weights(weight, analysis="bench", step=step)
                    latencies.append(time.perf_counter() - started)
                    attempts.append(result.attempts)

            started = time.perf_counter()
            await asyncio.gather(*(drive(r) for r in routers))
            wall = time.perf_counter() - started

        wrong = [
            n
            for n in names
            if api.virtual_service("bench", n)["spec"]["http"][1]["route"][1]["weight"] != steps[-1]
        ]
    total = len(latencies)
    q = statistics.quantiles(latencies, n=100)
    print(
        f"canaries={args.canaries} writes/canary={args.writes} conflict_every={args.conflict_every}"
    )
    print(f"wall {wall:.2f} s, {total / wall:.0f} writes/s")
    print(
        f"per write (read + patch + event): p50 {q[49] * 1000:.1f} ms, p90 {q[89] * 1000:.1f} ms,"
        f" p99 {q[98] * 1000:.1f} ms"
    )
    print(f"attempts: total {sum(attempts)} for {total} writes, max {max(attempts)}")
    print(f"final weights wrong: {len(wrong)}")
    return 1 if wrong else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--canaries", type=int, default=100)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--conflict-every", type=int, default=0)
    logging.basicConfig(level=logging.ERROR)  # retries log warnings; keep the figures readable
    sys.exit(asyncio.run(main(parser.parse_args())))
