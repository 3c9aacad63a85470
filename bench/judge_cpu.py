"""CPU time of the sequential judge per metric per round (target: <= 1 ms at 10,000
requests per arm per round).

    python bench/judge_cpu.py               # 2000 rounds per case
    python bench/judge_cpu.py --reps 300

Rounds come from `canary.metrics.simulated_traffic` (10,000 requests per arm per
one-minute round, 1% errors, Envoy's default latency buckets). Each case judges one
metric for `--reps` consecutive rounds and reports the median and mean CPU time
(`time.process_time`, so a loaded machine does not inflate it) of one `update`, with
explanations (the daemon, `canary analyze`) and without (`explain=False`, backtests).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from canary.config import AnalysisSettings, SequentialMetric
from canary.judge.sequential import SequentialJudge
from canary.metrics.simulated_traffic import ArmModel, TrafficModel, simulate
from canary.model import MetricKind

METRICS = {
    "counts": SequentialMetric(name="errors", kind=MetricKind.COUNTS),
    "histogram": SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM),
}


def measure(kind: str, explain: bool, reps: int) -> tuple[float, float]:
    """(median, mean) CPU ms of one update of one metric."""
    arm = ArmModel(error_rate=0.01)
    model = TrafficModel(rps=20000 / 60, canary_weight=0.5, baseline=arm, canary=arm)
    rounds = list(simulate(model, 1, seed=7).round_data(0))
    judge = SequentialJudge([METRICS[kind]], AnalysisSettings(), explain=explain)
    state = judge.initial_state()
    times = []
    for i in range(reps):
        data = rounds[i % len(rounds)]
        start = time.process_time_ns()
        state, _ = judge.update(state, data)
        times.append(time.process_time_ns() - start)
    body = np.array(times[5:], dtype=np.float64) / 1e6
    return float(np.median(body)), float(body.mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args(argv)
    print("| metric | explain | median CPU ms/round | mean CPU ms/round |")
    print("|---|---|---|---|")
    for kind in METRICS:
        for explain in (True, False):
            median, mean = measure(kind, explain, args.reps)
            print(f"| {kind} | {explain} | {median:.3f} | {mean:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
