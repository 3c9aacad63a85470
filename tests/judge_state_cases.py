"""Seeded analyses for each judge, and the states they store (`analyses.judge_state`).

    python tests/judge_state_cases.py     # writes tests/judge_states/<case>_<arm>.json

The JSON files in tests/judge_states/ were written by this script with the judges of
commit 893028b, which kept their states as plain dicts: they are the record of the
stored format that `tests/test_judge_state.py` holds today's typed states to. Run it
again only to add a case; the files it rewrites must come out unchanged.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from canary.config import (
    AnalysisSettings,
    MannWhitneyMetric,
    SequentialMetric,
    ThresholdMetric,
)
from canary.judge import make_judge
from canary.metrics.simulated_traffic import ArmModel, TrafficModel, simulate
from canary.model import MetricKind, RoundData

HERE = Path(__file__).parent / "judge_states"


def case_rounds(canary: ArmModel, seed: int, count: int = 9) -> list[RoundData]:
    model = TrafficModel(
        rps=30.0, rounds=count, canary_weight=0.5, canary=canary, missing_prob=0.15
    )
    rounds = []
    for k, data in enumerate(simulate(model, 1, seed=seed).round_data(0)):
        if data.error is None:
            # A value metric too; every fourth round the canary has no value.
            value = None if k % 4 == 3 else 100.0 + k * (3.0 if canary.error_rate > 0.01 else 0.5)
            data = replace(
                data,
                canary={**data.canary, "rps": value},
                baseline={**data.baseline, "rps": 100.0 + k * 0.5},
            )
        rounds.append(data)
    return rounds


def stored_states(judge_name: str, metrics: list[Any], rounds: list[RoundData]) -> list[dict]:
    settings = AnalysisSettings(judge=judge_name, metrics=metrics)
    judge = make_judge(judge_name, settings.metrics, settings)
    state = judge.initial_state()
    states = [state]
    for index, data in enumerate(rounds):
        state, _ = judge.update(state, data, final=index == len(rounds) - 1)
        states.append(state)
    return [s.to_json() for s in states]


CASES: dict[str, tuple[str, list[Any]]] = {
    "sequential": (
        "sequential",
        [
            SequentialMetric(name="errors", kind=MetricKind.COUNTS),
            SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM),
            SequentialMetric(name="rps", kind=MetricKind.VALUE),
        ],
    ),
    "mann_whitney": (
        "mann_whitney",
        [
            MannWhitneyMetric(name="errors", kind=MetricKind.COUNTS, critical=True),
            MannWhitneyMetric(name="latency", kind=MetricKind.HISTOGRAM, quantiles=[0.99]),
            MannWhitneyMetric(name="rps", kind=MetricKind.VALUE, group="load"),
        ],
    ),
    "threshold": (
        "threshold",
        [
            ThresholdMetric(name="errors", kind=MetricKind.COUNTS, min=0.99, failure_limit=1),
            ThresholdMetric(name="latency", kind=MetricKind.HISTOGRAM, max=80.0, consecutive=True),
            ThresholdMetric(name="rps", kind=MetricKind.VALUE, max=102.0, no_data="fail"),
        ],
    ),
}

ARMS = {"good": ArmModel(), "bad": ArmModel(error_rate=0.05, latency_median_ms=90.0)}


def case_states(case: str, arm: str) -> list[dict]:
    """The states stored, round by round (the initial one first), for one case."""
    judge_name, metrics = CASES[case]
    return stored_states(judge_name, metrics, case_rounds(ARMS[arm], seed=len(case)))


def recorded_states(case: str, arm: str) -> list[dict]:
    """The states the judges of commit 893028b stored for the case."""
    return json.loads((HERE / f"{case}_{arm}.json").read_text())


def main() -> int:
    for case in CASES:
        for arm in ARMS:
            states = case_states(case, arm)
            path = HERE / f"{case}_{arm}.json"
            path.write_text(json.dumps(states, indent=1) + "\n")
            print(f"{path}: {len(states)} states")
    return 0


if __name__ == "__main__":
    sys.exit(main())
