"""Seeded analyses for each judge, and the states they store (`analyses.judge_state`).

    python tests/judge_state_cases.py CASE...   # writes tests/judge_states/CASE_<arm>.json

The JSON files in tests/judge_states/ are the record of the stored format that
`tests/test_judge_state.py` holds today's typed states to. They were written by this
script with judges that kept their states as plain dicts: `sequential`,
`mann_whitney` and `threshold` with those of commit 893028b; `sequential_pods`
(per-pod rounds, so the baseline's pods are stored by name) and `sequential_older`
(`OLDER_FORMS`, continued to the end) with those of commit 2a130bc, the last whose
sequential metrics' entries were plain dicts. Run it again only to add a case.
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


def case_rounds(
    canary: ArmModel, seed: int, count: int = 9, pods: tuple[int, int] | None = None
) -> list[RoundData]:
    model = TrafficModel(
        rps=30.0,
        rounds=count,
        canary_weight=0.5,
        canary=canary,
        missing_prob=0.15,
        pod_counts=pods,
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
    "sequential_pods": (
        "sequential",
        [
            SequentialMetric(name="errors", kind=MetricKind.COUNTS),
            SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM),
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

#: Cases whose rounds carry per-pod observations: (canary pods, baseline pods).
PODS = {"sequential_pods": (3, 10)}


def rounds_of(case: str, arm: str) -> list[RoundData]:
    """The case's seeded rounds for one arm model."""
    return case_rounds(ARMS[arm], seed=len(case), pods=PODS.get(case))


def case_states(case: str, arm: str) -> list[dict]:
    """The states stored, round by round (the initial one first), for one case."""
    judge_name, metrics = CASES[case]
    return stored_states(judge_name, metrics, rounds_of(case, arm))


def recorded_states(case: str, arm: str) -> list[dict]:
    """The states the untyped judges stored for the case (see the module docstring)."""
    return json.loads((HERE / f"{case}_{arm}.json").read_text())


def _tracks(state: dict) -> list[dict]:
    return [track for entry in state["metrics"].values() for track in entry["tracks"]]


def _entries(state: dict) -> list[dict]:
    return list(state["metrics"].values())


def _without(data: dict, *keys: str) -> None:
    for key in keys:
        data.pop(key, None)


def _first_release(state: dict) -> None:
    """As first released: the over-dispersion guard's sums and tempering `phi`."""
    _over_dispersion_guard(state)
    for entry in _entries(state):
        entry["tracks"] = [
            {
                "loglik": t["loglik"],
                "dispersion": t["dispersion"],
                "rounds": t["rounds"],
                "phi": 1.25,
                "canary": t["canary"],
                "baseline": t["baseline"],
            }
            for t in entry["tracks"]
        ]


def _over_dispersion_guard(state: dict) -> None:
    """Before the robust evidence: no start-time mixtures, the guard's sums instead."""
    for entry in _entries(state):
        _without(entry, "pass_bounds", "estimates")
        entry["tracks"] = [
            {
                "loglik": t["loglik"],
                "dispersion": [0.5 * i for i in range(12)],
                "rounds": t["rounds"],
                "canary": t["canary"],
                "baseline": t["baseline"],
            }
            for t in entry["tracks"]
        ]


def _pod_sums(state: dict) -> None:
    """Before pods were kept by name (per-round pod sums) and before `b` and `tables`."""
    for entry in _entries(state):
        _without(entry, "estimates")
        for track in entry["tracks"]:
            _without(track, "tables")
            starts = track["starts"]
            track["starts"] = {"a": starts["a"], "logs": starts["logs"], "log_w": starts["log_w"]}
            spread = track["spread"]
            track["spread"] = {"pod_df": 27, "pod_max": 10, "pod_neff": 3900.0, "pod_ss": 0.004}
            track["spread"] |= {k: spread[k] for k in ("rounds", "s_m", "s_m2", "s_y", "s_yy")}


def _before_tables(state: dict) -> None:
    """Before the rounds' tables (the estimate's data) were kept."""
    for entry in _entries(state):
        _without(entry, "estimates")
        for track in entry["tracks"]:
            _without(track, "tables")


#: Older stored forms of a sequential state, made from a recorded `sequential_pods`
#: state after round 5: what the states stored by earlier versions held.
OLDER_FORMS = {
    "first_release": _first_release,
    "over_dispersion_guard": _over_dispersion_guard,
    "pod_sums": _pod_sums,
    "before_tables": _before_tables,
}


def older_form(form: str, arm: str) -> dict:
    """The recorded `sequential_pods` state after round 5, in an older stored form."""
    state = recorded_states("sequential_pods", arm)[5]
    OLDER_FORMS[form](state)
    return state


def continued_from(form: str, arm: str) -> dict:
    """The state the judge stores after continuing `older_form` to the case's end."""
    judge_name, metrics = CASES["sequential_pods"]
    settings = AnalysisSettings(judge=judge_name, metrics=metrics)
    judge = make_judge(judge_name, settings.metrics, settings)
    state = judge.read_state(older_form(form, arm))
    rounds = rounds_of("sequential_pods", arm)
    for data in rounds[5:]:
        state, _ = judge.update(state, data, final=data is rounds[-1])
    return state.to_json()


def recorded_continuations(arm: str) -> dict[str, dict]:
    """`continued_from` each older form, as the judges of commit 2a130bc stored it."""
    return json.loads((HERE / f"sequential_older_{arm}.json").read_text())


def main(cases: list[str]) -> int:
    if "sequential_older" in cases:
        cases.remove("sequential_older")
        for arm in ARMS:
            path = HERE / f"sequential_older_{arm}.json"
            states = {form: continued_from(form, arm) for form in OLDER_FORMS}
            path.write_text(json.dumps(states, indent=1) + "\n")
            print(f"{path}: {len(states)} states")
    for case in cases:
        for arm in ARMS:
            states = case_states(case, arm)
            path = HERE / f"{case}_{arm}.json"
            path.write_text(json.dumps(states, indent=1) + "\n")
            print(f"{path}: {len(states)} states")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
