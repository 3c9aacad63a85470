"""Pure statistics: judges take an analysis round by round and return a Judgement.

Every judge has the same incremental interface, so the daemon, the Argo endpoint,
`canary analyze`, `canary judge` and `canary replay` share one mechanism:

    judge = make_judge("sequential", metrics, settings)
    state = judge.initial_state()
    for round in rounds:
        state, judgement = judge.update(state, round, final=round is rounds[-1])

`state` is a JSON-serialisable dict (stored with the analysis) holding whatever the
judge needs to continue — running sums for the sequential judge, so the cost of
round k does not grow with k. `final=True` says the budget is reached: a metric
with neither PASS nor FAIL then becomes INCONCLUSIVE. A round with `error` set (its
queries failed) or without data changes no evidence.

No I/O here, and nothing imported from metrics/, traffic/, store/ or api/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from canary.config import AnalysisSettings, MetricConfig
from canary.model import Judgement, RoundData

__all__ = ["JUDGES", "Judge", "judge_rounds", "judged_bounds", "make_judge"]

JudgeState = dict[str, Any]


class Judge(Protocol):
    """What every judge implements."""

    name: str

    def initial_state(self) -> JudgeState: ...

    def update(
        self, state: JudgeState, round: RoundData, *, final: bool = False
    ) -> tuple[JudgeState, Judgement]: ...


JUDGES = ("sequential", "mann_whitney", "threshold")


def make_judge(name: str, metrics: Sequence[MetricConfig], settings: AnalysisSettings) -> Judge:
    """The judge called `name` for these metrics and settings.

    The judge modules are imported here, lazily, so each can be used on its own.
    Raises ValueError for an unknown name.
    """
    if name == "sequential":
        from canary.judge.sequential import SequentialJudge

        return SequentialJudge(metrics, settings)
    if name == "mann_whitney":
        from canary.judge.mann_whitney import MannWhitneyJudge

        return MannWhitneyJudge(metrics, settings)
    if name == "threshold":
        from canary.judge.threshold import ThresholdJudge

        return ThresholdJudge(metrics, settings)
    raise ValueError(f"unknown judge {name!r} (known: {', '.join(JUDGES)})")


def judged_bounds(state: Mapping[str, Any] | None) -> dict[str, list[float]]:
    """The histogram bucket bounds a judge state has fixed, per metric ({} if none).

    Only the sequential judge fixes bounds (at its warm-up) and judges nothing else
    of a histogram, so collection may then ask Prometheus for these buckets alone.
    The other judges read every bucket (histogram quantiles): {} for them.
    """
    if not state or state.get("judge") != "sequential":
        return {}
    return {
        name: [float(b) for b in entry["bounds"]]
        for name, entry in (state.get("metrics") or {}).items()
        if isinstance(entry, Mapping) and entry.get("bounds")
    }


def judge_rounds(judge: Judge, rounds: Sequence[RoundData]) -> list[Judgement]:
    """Judge a whole analysis; the last round is the budget. One Judgement per round."""
    state = judge.initial_state()
    judgements = []
    for index, round_data in enumerate(rounds):
        state, judgement = judge.update(state, round_data, final=index == len(rounds) - 1)
        judgements.append(judgement)
    return judgements
