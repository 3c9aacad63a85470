"""CPU cost per round of the `mann_whitney` and `threshold` judges.

    python bench/judge_cost_kayenta_threshold.py [--rounds 60] [--reps 5]

Two metrics (errors as counts at 10,000 requests per arm per round, cpu as a value),
seeded data, no regression. The mann_whitney judge re-runs the Mann-Whitney interval
on all values so far every round (Kayenta's semantics), so its cost grows with the
round; the threshold judge's does not. Prints milliseconds per metric per round.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from canary.config import AnalysisSettings, ThresholdMetric
from canary.judge.mann_whitney import MannWhitneyJudge
from canary.judge.threshold import ThresholdJudge
from canary.model import Counts, RoundData


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    metrics = [
        ThresholdMetric(name="errors", kind="counts", min=0.98),
        ThresholdMetric(name="cpu", kind="value", max=1.0),
    ]

    def arm() -> dict[str, object]:
        return {
            "errors": Counts(10_000, int(rng.binomial(10_000, 0.01))),
            "cpu": float(rng.normal(0.5, 0.05)),
        }

    rounds = [RoundData(canary=arm(), baseline=arm()) for _ in range(args.rounds)]
    print(f"{'judge':<14} {'rounds':>9} {'ms/metric/round':>16}")
    for cls in (MannWhitneyJudge, ThresholdJudge):
        judge = cls(metrics, AnalysisSettings())
        per_round = np.zeros(args.rounds)
        for _ in range(args.reps):
            state = judge.initial_state()
            for index, round_data in enumerate(rounds):
                start = time.perf_counter()
                state, _ = judge.update(state, round_data, final=index == args.rounds - 1)
                per_round[index] += time.perf_counter() - start
        per_metric = per_round / args.reps / len(metrics) * 1e3
        for low in range(0, args.rounds, max(1, args.rounds // 4)):
            high = min(args.rounds, low + 10)
            window = per_metric[low:high]
            print(f"{judge.name:<14} {low + 1:>4}-{high:<4} {window.mean():>16.3f}")


if __name__ == "__main__":
    main()
