"""Cost of the store gauges a /metrics scrape reads (`canary.telemetry.StoreCollector`).

Fills a database with `--analyses` analyses over `--canaries` canaries (a share
`--running` of them running, with a next round due), then times the collector's
two queries the way a scrape runs them (`REGISTRY.collect()` of the store gauges).

    python bench/store_gauges.py                           # SQLite, 10,000 analyses
    python bench/store_gauges.py --analyses 100000
    python bench/store_gauges.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Prints the median and p99 time of one collection over `--repeats` collections.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert

from canary.store.database import connect, migrate, sessions
from canary.store.tables import Analysis
from canary.telemetry import StoreCollector


def fill(factory, analyses: int, canaries: int, running: float) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    statuses = ["promoted", "rolled_back", "inconclusive", "aborted", "halted"]
    rows = []
    for i in range(analyses):
        is_running = i < analyses * running
        rows.append(
            {
                "id": f"bench-{i}",
                "canary": f"canary-{i % canaries}",
                "source": "daemon",
                "status": "running" if is_running else statuses[i % len(statuses)],
                "verdict": "running" if is_running else "pass",
                "judge": "sequential",
                "settings": {},
                "started_at": now - timedelta(hours=i % 1000),
                "updated_at": now,
                "next_round_at": now - timedelta(seconds=i % 90) if is_running else None,
            }
        )
    with factory.begin() as session:
        session.execute(delete(Analysis).where(Analysis.id.like("bench-%")))
        for start in range(0, len(rows), 5000):
            session.execute(insert(Analysis), rows[start : start + 5000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analyses", type=int, default=10_000)
    parser.add_argument("--canaries", type=int, default=200)
    parser.add_argument("--running", type=float, default=0.02)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = connect(url)
        migrate(engine)
        factory = sessions(engine)
        fill(factory, args.analyses, args.canaries, args.running)
        collector = StoreCollector(factory)
        list(collector.collect())  # warm the connection pool and the page cache
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            families = list(collector.collect())
            times.append(time.perf_counter() - started)
        series = sum(len(f.samples) for f in families)
        times.sort()
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        print(
            f"{args.analyses:,} analyses, {args.canaries} canaries, {engine.dialect.name}: "
            f"{series} series per scrape; collect median {statistics.median(times) * 1e3:.1f} ms, "
            f"p99 {p99 * 1e3:.1f} ms ({args.repeats} scrapes)"
        )
        if args.database_url:
            with factory.begin() as session:
                session.execute(delete(Analysis).where(Analysis.id.like("bench-%")))
        engine.dispose()


if __name__ == "__main__":
    main()
