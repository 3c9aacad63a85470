"""The rollout state machine and the round step: pure, no I/O, no clock of its own.

`step(...)` is one round as every caller takes it (the daemon, the Argo endpoint,
`canary analyze` and replay): budget -> judge update -> decide. `decide(state,
judgement, now, settings)` takes the judgement of the analysis so far (None when the
round's queries failed) and returns the round's decision and the next state;
`command(state, op, now, settings)` applies an operator's manual gate. A rollout's
status changes only through these two (`halt` records a halt decided at the edge,
a promotion the router could not carry out), and `stored_verdict` is the one map
from a finished rollout to the verdict it is stored with.

A judged-only analysis (the Argo endpoint, `canary analyze`) has no rollout state:
`step` says when one of its rounds closes it (`judged_closing`: at a FAIL or at the
budget's last round), and `window_closing` / `warmup_failed` how `canary analyze`
closes the analysis of a past window.

Rules, in order:

1. a round whose queries failed changes no evidence; after `max_failed_rounds`
   consecutive ones the analysis halts at its weight (or rolls back, per
   `on_failed_rounds`) and says why. Missing data is never a pass;
2. any metric FAIL -> `rollback` (canary weight 0 at once);
3. the budget (`max_rounds`, `max_duration`) exhausted without PASS -> INCONCLUSIVE,
   then `on_inconclusive`: `rollback` or `hold` (halt at the current weight);
4. the step's min duration reached: `advance` to the next step; at the last step
   promote on PASS only (`promotion = "evidence"`), or on no FAIL
   (`promotion = "no-failure"`, as Flagger and Argo do);
5. otherwise `continue`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from canary.config import AnalysisSettings
from canary.model import AnalysisStatus, Decision, Judgement, RoundData, Verdict

if TYPE_CHECKING:
    from canary.judge import Judge, JudgeState

__all__ = [
    "ACTION_KINDS",
    "Closing",
    "EngineState",
    "Outcome",
    "RoundStep",
    "at_budget",
    "budget_reached",
    "command",
    "decide",
    "halt",
    "judged_closing",
    "start",
    "step",
    "stored_verdict",
    "warmup_failed",
    "weight_applied",
    "window_closing",
]

ManualOp = Literal["pause", "resume", "abort", "promote"]


@dataclass(frozen=True, slots=True)
class EngineState:
    """Where a rollout stands. `step` indexes `settings.steps`."""

    status: AnalysisStatus
    step: int
    weight: int
    started_at: datetime
    step_started_at: datetime
    rounds: int = 0  # rounds decided so far (failed rounds included)
    failed_rounds: int = 0  # consecutive rounds whose queries failed
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["started_at"] = self.started_at.isoformat()
        data["step_started_at"] = self.step_started_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineState:
        return cls(
            status=AnalysisStatus(data["status"]),
            step=int(data["step"]),
            weight=int(data["weight"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            step_started_at=datetime.fromisoformat(data["step_started_at"]),
            rounds=int(data.get("rounds", 0)),
            failed_rounds=int(data.get("failed_rounds", 0)),
            reason=data.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """A round's decision, the weight to set (None: leave as is) and the next state."""

    decision: Decision
    state: EngineState
    weight: int | None
    reason: str

    @property
    def changes_traffic(self) -> bool:
        return self.weight is not None


def start(settings: AnalysisSettings, now: datetime) -> tuple[EngineState, int]:
    """The state of a new rollout and the first weight to set."""
    first = settings.steps[0].weight
    state = EngineState(
        status=AnalysisStatus.RUNNING, step=0, weight=first, started_at=now, step_started_at=now
    )
    return state, first


def weight_applied(state: EngineState, kind: str, applied_at: datetime) -> EngineState:
    """The state once the weight of a `start` or `advance` action is in place.

    A step's clock starts when its weight reaches the traffic, not when it was
    decided: an action carried out late (the daemon was down, the Kubernetes API
    answered 404) gives the step its full duration. A round that carries out its own
    action passes its own time, which leaves the clock where the decision put it. The
    budget (`max_duration`) likewise starts when the first weight is applied.
    """
    if kind not in ("start", "advance") or state.status is not AnalysisStatus.RUNNING:
        return state
    step_started_at = max(state.step_started_at, applied_at)
    started_at = max(state.started_at, applied_at) if kind == "start" else state.started_at
    return replace(state, step_started_at=step_started_at, started_at=started_at)


def at_budget(
    rounds: int, started_at: datetime | None, now: datetime | None, settings: AnalysisSettings
) -> bool:
    """The one budget rule, for every source: True when a round is the last one allowed.

    `rounds` counts the analysis' rounds after the warm-up up to and including this
    one; `now` is the end of this round's window (None, or no `started_at`: unknown,
    only `max_rounds` applies). The round that reaches `max_rounds`, or whose window
    ends `max_duration` or more after the start, is judged with `final=True` and ends
    the analysis: neither PASS nor FAIL by then is INCONCLUSIVE.
    """
    if settings.max_rounds is not None and rounds >= settings.max_rounds:
        return True
    if settings.max_duration is not None and now is not None and started_at is not None:
        return (now - started_at).total_seconds() >= settings.max_duration
    return False


def budget_reached(state: EngineState, settings: AnalysisSettings, now: datetime) -> bool:
    """True when this round is the last the budget allows (judge with `final=True`)."""
    return at_budget(state.rounds + 1, state.started_at, now, settings)


@dataclass(frozen=True, slots=True)
class Closing:
    """How a judged-only analysis ends: its status, the verdict it is stored with
    (None keeps the last one judged) and why."""

    status: AnalysisStatus
    verdict: Verdict | None
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) or None


def judged_closing(judgement: Judgement | None, final: bool) -> Closing | None:
    """The round of a judged-only analysis that ends it: a FAIL, or the last round the
    budget allows (`final`); COMPLETED with the judgement's reasons. A round whose
    queries failed (`judgement` None) ends nothing."""
    if judgement is None or not (final or judgement.verdict is Verdict.FAIL):
        return None
    reasons = tuple(judgement.reasons) or (f"verdict {judgement.verdict.value}",)
    return Closing(AnalysisStatus.COMPLETED, None, reasons)


def window_closing(last: Judgement | None, failed_rounds: int) -> Closing:
    """How the analysis of one past window (`canary analyze`) ends after its rounds.

    COMPLETED with the last judgement's verdict (INCONCLUSIVE if it is still RUNNING
    or no round could be judged), its reasons and how many rounds failed to query.
    """
    verdict = last.verdict if last else Verdict.INCONCLUSIVE
    if verdict is Verdict.RUNNING:
        verdict = Verdict.INCONCLUSIVE
    reasons = list(last.reasons) if last else ["no round could be judged"]
    if failed_rounds:
        reasons.append(f"{failed_rounds} round(s) failed to query Prometheus")
    return Closing(AnalysisStatus.COMPLETED, verdict, tuple(reasons))


def warmup_failed(error: str) -> Closing:
    """A past window whose warm-up snapshot failed has nothing to judge: ABORTED."""
    return Closing(AnalysisStatus.ABORTED, None, (error,))


@dataclass(frozen=True, slots=True)
class RoundStep:
    """What one round did: the judge's new state, its judgement and the decision.

    `judge_state` is the one `step` was given for a warm-up (None when the analysis
    has not been judged yet); `judgement` is None for a warm-up or a round whose
    queries failed; `outcome` is None for a judged-only analysis and for a warm-up that
    took its snapshot; `closing` is set when the round ends a judged-only analysis
    (`judged_closing`).
    """

    judge_state: JudgeState | None
    judgement: Judgement | None
    final: bool
    outcome: Outcome | None = None
    closing: Closing | None = None

    @property
    def finished(self) -> bool:
        """The rollout left RUNNING with this round."""
        return self.outcome is not None and self.outcome.state.status is not AnalysisStatus.RUNNING


def step(
    judge: Judge[Any],
    judge_state: JudgeState | None,
    data: RoundData,
    now: datetime,
    settings: AnalysisSettings,
    *,
    index: int,
    state: EngineState | None = None,
    started_at: datetime | None = None,
    final: bool | None = None,
) -> RoundStep:
    """One round: budget -> judge update -> decide.

    `state` is the rollout's engine state (daemon analyses); None judges only (the
    Argo endpoint, `canary analyze`), the budget then counted from `index` and
    `started_at`. Round 0 is the warm-up: it takes the counter snapshot and judges
    nothing, but a warm-up whose queries failed counts as a failed round for the
    engine. `judge_state` None starts the judge from its initial state (an analysis
    not judged yet). `final=None` derives the budget; True forces the last round (neither PASS
    nor FAIL becomes INCONCLUSIVE).
    """
    if index == 0:
        outcome = None
        if state is not None and data.error is not None:
            outcome = decide(state, None, now, settings, error=data.error)
        return RoundStep(judge_state, None, False, outcome)
    if final is None:
        if state is not None:
            final = budget_reached(state, settings, now)
        else:
            assert started_at is not None, "a judged-only round needs the analysis' start"
            final = at_budget(index, started_at, now, settings)
    if judge_state is None:
        judge_state = judge.initial_state()
    new_state, judgement = judge.update(judge_state, data, final=final)
    judged = judgement if data.error is None else None
    if state is None:
        return RoundStep(new_state, judged, final, closing=judged_closing(judged, final))
    outcome = decide(state, judged, now, settings, error=data.error)
    return RoundStep(new_state, judged, final, outcome)


#: The action recorded for a decision that moves traffic.
ACTION_KINDS = {
    Decision.ADVANCE: "advance",
    Decision.PROMOTE: "promote",
    Decision.ROLLBACK: "rollback",
}


def stored_verdict(status: AnalysisStatus, judgement: Judgement | None) -> Verdict | None:
    """The verdict a finished rollout is stored with; None keeps the last one judged.

    A rollout that ran out of budget is INCONCLUSIVE whatever its last judgement said.
    """
    if status is AnalysisStatus.INCONCLUSIVE:
        return Verdict.INCONCLUSIVE
    return judgement.verdict if judgement is not None else None


def halt(state: EngineState, reason: str) -> EngineState:
    """The state of a rollout halted at its weight for `reason` (found at the edge)."""
    return replace(state, status=AnalysisStatus.HALTED, reason=reason)


def decide(
    state: EngineState,
    judgement: Judgement | None,
    now: datetime,
    settings: AnalysisSettings,
    *,
    error: str | None = None,
) -> Outcome:
    """The decision of one round; `judgement` is None when the round's queries failed."""
    if state.status is not AnalysisStatus.RUNNING:
        return Outcome(Decision.HOLD, state, None, f"analysis is {state.status.value}")
    counted = replace(state, rounds=state.rounds + 1)

    if judgement is None:
        failed = counted.failed_rounds + 1
        counted = replace(counted, failed_rounds=failed)
        why = f"{failed} consecutive rounds without data from Prometheus ({error or 'error'})"
        if failed >= settings.max_failed_rounds:
            if settings.on_failed_rounds == "rollback":
                return _rollback(counted, AnalysisStatus.ROLLED_BACK, why)
            halted = replace(counted, status=AnalysisStatus.HALTED, reason=f"halted: {why}")
            return Outcome(Decision.HOLD, halted, None, f"halted: {why}")
        return Outcome(Decision.CONTINUE, counted, None, f"round failed: {error or 'error'}")

    counted = replace(counted, failed_rounds=0)
    if judgement.verdict is Verdict.FAIL:
        return _rollback(counted, AnalysisStatus.ROLLED_BACK, _why(judgement, "failed"))

    last_step = counted.step == len(settings.steps) - 1
    step_done = (now - counted.step_started_at).total_seconds() >= settings.steps[
        counted.step
    ].duration
    passed = judgement.verdict is Verdict.PASS
    if last_step and step_done and (passed or settings.promotion == "no-failure"):
        why = _why(judgement, "passed") if passed else "last step completed without failure"
        return _promote(counted, why)

    out_of_budget = judgement.verdict is Verdict.INCONCLUSIVE or _over_budget(
        counted, settings, now
    )
    if out_of_budget and not passed:
        why = "budget reached without a PASS verdict: inconclusive"
        if settings.on_inconclusive == "rollback":
            return _rollback(counted, AnalysisStatus.INCONCLUSIVE, why)
        halted = replace(counted, status=AnalysisStatus.HALTED, reason=f"halted: {why}")
        return Outcome(Decision.HOLD, halted, None, f"halted: {why}")

    if step_done and not last_step:
        step = counted.step + 1
        weight = settings.steps[step].weight
        advanced = replace(counted, step=step, weight=weight, step_started_at=now)
        return Outcome(
            Decision.ADVANCE, advanced, weight, f"step {step} of {len(settings.steps)} done"
        )
    waiting = "waiting for PASS evidence" if last_step and step_done else "step in progress"
    return Outcome(Decision.CONTINUE, counted, None, waiting)


def command(state: EngineState, op: ManualOp, now: datetime, settings: AnalysisSettings) -> Outcome:
    """An operator's manual gate: pause, resume, abort (roll back) or promote now."""
    if state.status.is_final:
        raise ValueError(f"analysis is already {state.status.value}")
    if op == "pause":
        if state.status is not AnalysisStatus.RUNNING:
            raise ValueError(f"only a running analysis can be paused (it is {state.status})")
        paused = replace(state, status=AnalysisStatus.PAUSED, reason="paused by operator")
        return Outcome(Decision.HOLD, paused, None, "paused by operator")
    if op == "resume":
        if state.status is AnalysisStatus.RUNNING:
            raise ValueError("analysis is already running")
        # The step's clock starts over: a halted or paused step gathered no evidence.
        resumed = replace(
            state,
            status=AnalysisStatus.RUNNING,
            failed_rounds=0,
            step_started_at=now,
            reason="resumed by operator",
        )
        return Outcome(Decision.CONTINUE, resumed, None, "resumed by operator")
    if op == "abort":
        return _rollback(state, AnalysisStatus.ABORTED, "aborted by operator")
    if op == "promote":
        return _promote(state, "promoted by operator")
    raise ValueError(f"unknown operation {op!r}")


def _over_budget(state: EngineState, settings: AnalysisSettings, now: datetime) -> bool:
    """`at_budget` of a state that already counts this round."""
    return at_budget(state.rounds, state.started_at, now, settings)


def _why(judgement: Judgement, verb: str) -> str:
    reasons = "; ".join(judgement.reasons)
    return f"{verb} at round {judgement.round}: {reasons}" if reasons else verb


def _rollback(state: EngineState, status: AnalysisStatus, why: str) -> Outcome:
    final = replace(state, status=status, weight=0, reason=why)
    return Outcome(Decision.ROLLBACK, final, 0, why)


def _promote(state: EngineState, why: str) -> Outcome:
    final = replace(state, status=AnalysisStatus.PROMOTED, weight=100, reason=why)
    return Outcome(Decision.PROMOTE, final, 100, why)
