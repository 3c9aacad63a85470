"""Pure statistics: judges take an analysis round by round and return a Judgement.

Every judge has the same incremental interface, so the daemon, the Argo endpoint,
`canary analyze`, `canary judge` and `canary replay` share one mechanism:

    judge = make_judge("sequential", metrics, settings)
    state = judge.initial_state()
    for round in rounds:
        state, judgement = judge.update(state, round, final=round is rounds[-1])

`state` is the judge's typed state (`canary.judge.states`: a frozen dataclass per
judge) holding whatever it needs to continue — running sums for the sequential
judge, so the cost of round k does not grow with k. It is stored with the analysis
as `state.to_json()` and read back with `judge.read_state(json)`, which refuses a
malformed state with a `JudgeStateError` naming the field. `final=True` says the
budget is reached: a metric with neither PASS nor FAIL then becomes INCONCLUSIVE. A
round with `error` set (its queries failed) or without data changes no evidence.

No I/O here, and nothing imported from metrics/, traffic/, store/ or api/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from canary.config import AnalysisSettings, MetricConfig
from canary.judge.states import JudgeState
from canary.model import Judgement, RoundData

__all__ = ["JUDGES", "Judge", "JudgeState", "judge_rounds", "judged_bounds", "make_judge"]

S = TypeVar("S", bound=JudgeState)


class Judge(Protocol[S]):
    """What every judge implements; `S` is its state type (`canary.judge.states`)."""

    name: str

    def initial_state(self) -> S: ...

    def read_state(self, data: Mapping[str, Any]) -> S:
        """The state stored as `data` (`S.to_json()`); JudgeStateError names a bad field."""
        ...

    def update(self, state: S, round: RoundData, *, final: bool = False) -> tuple[S, Judgement]: ...

    def for_rounds(self, rounds: Sequence[RoundData]) -> Judge[S]:
        """This judge for judging `rounds` in order (a replay), with the same results;
        it may compute at once what depends on the rounds alone."""
        ...


JUDGES = ("sequential", "mann_whitney", "threshold")


def make_judge(
    name: str, metrics: Sequence[MetricConfig], settings: AnalysisSettings
) -> Judge[Any]:
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


def judge_rounds(judge: Judge[Any], rounds: Sequence[RoundData]) -> list[Judgement]:
    """Judge a whole analysis; the last round is the budget. One Judgement per round."""
    state = judge.initial_state()
    judgements = []
    for index, round_data in enumerate(rounds):
        state, judgement = judge.update(state, round_data, final=index == len(rounds) - 1)
        judgements.append(judgement)
    return judgements
