"""How fast a backtest replays stored analyses (target: 10,000 analyses of 30 rounds < 1 min).

    python bench/replay_speed.py                      # 10,000 analyses x 30 rounds, SQLite
    python bench/replay_speed.py --analyses 500       # a quick look
    python bench/replay_speed.py --database-url postgresql+psycopg://postgres@127.0.0.1/test
    python bench/replay_speed.py --keep /tmp/replay-bench.db   # reuse the filled store

The store is filled first (not timed): each analysis is judged by the sequential
judge round by round — through the engine for daemon rollouts (60%), per round for
Argo (20%) and `canary analyze` (20%) analyses — and written with its observations
(2 metrics x 2 arms), per-metric results and decisions, as the real paths store them.
One in five canaries regresses partway. Traffic is seeded: Poisson requests at 20 rps
with a 20% canary, binomial errors, latencies in Envoy-like buckets.

Then the timed part is exactly what `canary replay --all` does (selecting the ids,
reading the rounds in batches, resolving the recorded settings, judging, deciding,
summarising), printed as analyses/s with the time split into reading and judging,
plus how many recorded decisions were reproduced (all of them, or it says which).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary import engine
from canary.config import AnalysisSettings, SequentialMetric, StepConfig
from canary.judge import make_judge
from canary.model import AnalysisStatus, Counts, Histogram, RoundData, Verdict, json_safe
from canary.replay import (
    BacktestSummary,
    backtest,
    iter_stored,
    replay,
    resolve_settings,
    select_ids,
)
from canary.store.database import connect, migrate, sessions
from canary.store.tables import Analysis, MetricResultRow, ObservationRow, Round

BOUNDS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, math.inf)
T0 = datetime(2026, 10, 1, tzinfo=UTC)
INTERVAL = 60.0


def settings() -> AnalysisSettings:
    return AnalysisSettings(
        interval=INTERVAL,
        max_duration=30 * INTERVAL,
        steps=[
            StepConfig(weight=10, duration=5 * INTERVAL),
            StepConfig(weight=20, duration=5 * INTERVAL),
            StepConfig(weight=50, duration=10 * INTERVAL),
        ],
        metrics=[
            SequentialMetric(name="errors", kind="counts", min_requests=500),
            SequentialMetric(name="latency", kind="histogram"),
        ],
        promotion="no-failure",
    )


def _bucket_probabilities(scale: float) -> np.ndarray:
    from scipy.stats import lognorm

    cdf = [lognorm.cdf(b, s=0.6, scale=40.0 * scale) if math.isfinite(b) else 1.0 for b in BOUNDS]
    return np.diff([0.0, *cdf])


def rounds_for(rng: np.random.Generator, count: int, bad: bool) -> list[RoundData]:
    """`count` judged rounds of seeded traffic; a bad canary regresses from a random round."""
    fine, slow = _bucket_probabilities(1.0), _bucket_probabilities(1.5)
    start = int(rng.integers(3, 15)) if bad else count + 1
    out = []
    for index in range(1, count + 1):
        n, m = int(rng.poisson(20 * 60 * 0.2)), int(rng.poisson(20 * 60 * 0.8))
        regressed = index >= start
        p = 0.03 if regressed else 0.01
        canary_hist = np.cumsum(rng.multinomial(n, slow if regressed else fine))
        baseline_hist = np.cumsum(rng.multinomial(m, fine))
        end = T0 + timedelta(seconds=INTERVAL * index)
        out.append(
            RoundData(
                canary={
                    "errors": Counts(n, int(rng.binomial(n, p))),
                    "latency": Histogram(BOUNDS, tuple(int(x) for x in canary_hist)),
                },
                baseline={
                    "errors": Counts(m, int(rng.binomial(m, 0.01))),
                    "latency": Histogram(BOUNDS, tuple(int(x) for x in baseline_hist)),
                },
                start=end - timedelta(seconds=INTERVAL),
                end=end,
            )
        )
    return out


def _observation_rows(round_id: int, data: RoundData) -> list[dict]:
    from canary.model import observation_to_json

    rows = []
    for arm, side in (("canary", data.canary), ("baseline", data.baseline)):
        for metric, value in side.items():
            kind = "histogram" if isinstance(value, Histogram) else "counts"
            delta = observation_to_json(value)
            rows.append(
                dict(
                    round_id=round_id, metric=metric, arm=arm, kind=kind, delta=delta, snapshot=None
                )
            )
    return rows


def fill(url: str, analyses: int, rounds: int, seed: int) -> None:
    """Judge and store `analyses` analyses as the three paths would (not timed)."""
    rng = np.random.default_rng(seed)
    base = settings()
    dump = {**base.model_dump(mode="json"), "name": "checkout"}
    factory = sessions(connect(url))
    round_id = 0
    batch: dict[str, list[dict]] = {"analyses": [], "rounds": [], "observations": [], "results": []}
    started = time.perf_counter()
    for number in range(analyses):
        source = ("daemon", "daemon", "daemon", "argo", "analyze")[number % 5]
        bad = rng.random() < 0.2
        data = rounds_for(rng, rounds, bad)
        judge = make_judge("sequential", base.metrics, base)
        judge_state = judge.initial_state()
        state, _ = engine.start(base, T0)
        recorded = []
        last = None
        for index, round_data in enumerate(data, 1):
            if source == "daemon":
                final = engine.budget_reached(state, base, round_data.end)
                judge_state, judgement = judge.update(judge_state, round_data, final=final)
                outcome = engine.decide(state, judgement, round_data.end, base)
                state = outcome.state
                recorded.append((index, round_data, judgement, outcome.decision.value, state))
                last = judgement
                if state.status is not AnalysisStatus.RUNNING:
                    break
            else:
                # As canary.rounds.judge_round: the budget (max_duration from the
                # start); `canary analyze` also ends its window with the budget.
                elapsed = (round_data.end - T0).total_seconds()
                final = elapsed >= (base.max_duration or math.inf)
                final = final or (source == "analyze" and index == len(data))
                judge_state, judgement = judge.update(judge_state, round_data, final=final)
                recorded.append((index, round_data, judgement, None, None))
                last = judgement
                if judgement.verdict is Verdict.FAIL and source == "argo":
                    break
        analysis_id = f"bench-{number:06d}"
        status = state.status.value if source == "daemon" else "completed"
        verdict = last.verdict.value if last else "running"
        if status == "inconclusive":
            verdict = "inconclusive"
        batch["analyses"].append(
            dict(
                id=analysis_id,
                canary="checkout",
                key=None,
                source=source,
                revision=f"r{number}",
                status=status,
                verdict=verdict,
                verdict_round=last.round if last else None,
                reason=None,
                judge="sequential",
                settings=dump,
                engine_state=state.to_json() if source == "daemon" else {},
                judge_state={},
                snapshot={},
                weight=state.weight if source == "daemon" else 0,
                step=state.step if source == "daemon" else 0,
                rounds_done=len(recorded),
                started_at=T0,
                updated_at=T0,
                finished_at=T0,
                next_round_at=None,
            )
        )
        round_id += 1
        batch["rounds"].append(_round_row(round_id, analysis_id, 0, T0, None, "running", 10))
        for index, round_data, judgement, decision, engine_state in recorded:
            round_id += 1
            weight = engine_state.weight if engine_state else 0
            batch["rounds"].append(
                _round_row(
                    round_id,
                    analysis_id,
                    index,
                    round_data.end,
                    decision,
                    judgement.verdict.value,
                    weight,
                    round_data.start,
                )
            )
            batch["observations"].extend(_observation_rows(round_id, round_data))
            for result in judgement.metrics.values():
                batch["results"].append(
                    dict(
                        round_id=round_id,
                        metric=result.name,
                        verdict=result.verdict.value,
                        verdict_round=result.round,
                        reasons=list(result.reasons),
                        statistics=json_safe(dict(result.statistics)),
                        evidence=json_safe(dict(result.evidence[-1])) if result.evidence else {},
                    )
                )
        if len(batch["analyses"]) >= 200 or number == analyses - 1:
            with factory.begin() as session:
                session.execute(insert(Analysis), batch["analyses"])
                session.execute(insert(Round), batch["rounds"])
                session.execute(insert(ObservationRow), batch["observations"])
                session.execute(insert(MetricResultRow), batch["results"])
            batch = {k: [] for k in batch}
            done = number + 1
            rate = done / (time.perf_counter() - started)
            print(f"\rfilling: {done}/{analyses} analyses ({rate:.0f}/s)", end="", file=sys.stderr)
    print(file=sys.stderr)


def _round_row(
    round_id: int,
    analysis_id: str,
    index: int,
    end: datetime,
    decision: str | None,
    verdict: str,
    weight: int,
    start: datetime | None = None,
) -> dict:
    return dict(
        id=round_id,
        analysis_id=analysis_id,
        index=index,
        window_start=start,
        window_end=end,
        recorded_at=end,
        weight=weight,
        step=0,
        error=None,
        verdict=verdict,
        decision=decision,
        reasons=[],
        score=None,
    )


def backtest_split(url: str) -> None:
    """One process, timing reading and judging apart (the profile of a backtest)."""
    factory = sessions(connect(url))
    t0, cpu0 = time.perf_counter(), time.process_time()
    reading = judging = 0.0
    summary = BacktestSummary(name="replayed")
    rounds = 0
    mismatched: list[str] = []
    with factory() as session:
        ids = select_ids(session)
        reading += time.perf_counter() - t0
        stream = iter_stored(session, ids)
        while True:
            mark = time.perf_counter()
            stored = next(stream, None)
            after_read = time.perf_counter()
            reading += after_read - mark
            if stored is None:
                break
            if isinstance(stored, Exception):
                raise stored  # the bench writes every analysis itself: none is malformed
            result = replay(stored, resolve_settings(stored), explain=False)  # as backtest()
            judging += time.perf_counter() - after_read
            summary.add(result)
            rounds += len(stored.rounds)
            if not result.reproduced:
                mismatched.append(stored.id)
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(f"1 process: {summary.analyses} analyses ({rounds} stored rounds)")
    print(f"  wall {total:.1f} s -> {summary.analyses / total:.0f} analyses/s (CPU {cpu:.1f} s)")
    print(f"  reading the store: {reading:.1f} s   judging + engine: {judging:.1f} s")
    print(f"  per stored round: {1e6 * judging / max(rounds, 1):.0f} µs judging")
    _reproduced(summary.analyses, mismatched)


def backtest_parallel(url: str, workers: int) -> None:
    """What `canary replay --all --workers N` does."""
    factory = sessions(connect(url))
    t0 = time.perf_counter()
    with factory() as session:
        ids = select_ids(session)
    run = backtest(url, ids, [("replayed", None)], workers=workers)
    total = time.perf_counter() - t0
    results = run.results["replayed"]
    print(f"{workers} processes: {len(results)} analyses")
    print(f"  wall {total:.1f} s -> {len(results) / total:.0f} analyses/s")
    _reproduced(len(results), [r.analysis_id for r in results if not r.reproduced])


def _reproduced(count: int, mismatched: list[str]) -> None:
    print(f"  recorded decisions reproduced: {count - len(mismatched)} of {count}")
    if mismatched:
        print(f"  differing: {', '.join(mismatched[:10])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--keep", metavar="FILE", help="SQLite file to fill once and reuse")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: CPUs)"
    )
    parser.add_argument(
        "--split", action="store_true", help="also time one process, reading vs judging"
    )
    args = parser.parse_args()
    temp = None
    if args.database_url:
        url = args.database_url
    elif args.keep:
        url = f"sqlite:///{Path(args.keep).resolve()}"
    else:
        temp = tempfile.TemporaryDirectory()
        url = f"sqlite:///{temp.name}/bench.db"
    engine_ = connect(url)
    migrate(engine_)
    with sessions(engine_)() as session:
        present = len(select_ids(session))
    if present == 0:
        fill(url, args.analyses, args.rounds, args.seed)
    elif present != args.analyses:
        print(f"note: the store holds {present} analyses; backtesting those", file=sys.stderr)
    print(f"store: {url.split('@')[-1]}  cores: {os.cpu_count()}")
    if args.split or args.workers <= 1:
        backtest_split(url)
    if args.workers > 1:
        backtest_parallel(url, args.workers)
    if temp is not None:
        temp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
