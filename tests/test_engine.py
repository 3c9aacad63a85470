"""The rollout state machine (every transition) and the round step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canary.config import AnalysisSettings, StepConfig
from canary.engine import (
    EngineState,
    budget_reached,
    command,
    decide,
    start,
    step,
    stored_verdict,
    warmup_failed,
    weight_applied,
    window_closing,
)
from canary.model import AnalysisStatus, Decision, Judgement, RoundData, Verdict

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STEPS = [StepConfig(weight=10, duration=120), StepConfig(weight=50, duration=120)]


def settings(**overrides: object) -> AnalysisSettings:
    return AnalysisSettings(steps=STEPS, max_duration=3600, **overrides)  # type: ignore[arg-type]


def judged(verdict: Verdict, round: int | None = 1) -> Judgement:
    return Judgement(verdict=verdict, round=round, metrics={}, reasons=[f"metric {verdict}"])


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_start_at_the_first_step() -> None:
    state, weight = start(settings(), T0)
    assert (state.status, state.step, weight) == (AnalysisStatus.RUNNING, 0, 10)


def test_continue_within_a_step_then_advance() -> None:
    state, _ = start(settings(), T0)
    outcome = decide(state, judged(Verdict.RUNNING), at(60), settings())
    assert outcome.decision is Decision.CONTINUE and outcome.weight is None
    outcome = decide(outcome.state, judged(Verdict.RUNNING), at(120), settings())
    assert outcome.decision is Decision.ADVANCE and outcome.weight == 50
    assert outcome.state.step == 1 and outcome.state.step_started_at == at(120)


def test_last_step_promotes_only_on_pass_under_evidence_policy() -> None:
    state, _ = start(settings(), T0)
    state = decide(state, judged(Verdict.RUNNING), at(120), settings()).state
    waiting = decide(state, judged(Verdict.RUNNING), at(240), settings())
    assert waiting.decision is Decision.CONTINUE
    assert waiting.reason == "waiting for PASS evidence"
    promoted = decide(waiting.state, judged(Verdict.PASS, 5), at(300), settings())
    assert promoted.decision is Decision.PROMOTE and promoted.weight == 100
    assert promoted.state.status is AnalysisStatus.PROMOTED


def test_pass_before_the_last_step_keeps_walking_the_steps() -> None:
    state, _ = start(settings(), T0)
    outcome = decide(state, judged(Verdict.PASS), at(30), settings())
    assert outcome.decision is Decision.CONTINUE
    outcome = decide(outcome.state, judged(Verdict.PASS), at(120), settings())
    assert outcome.decision is Decision.ADVANCE


def test_no_failure_policy_promotes_after_the_last_step() -> None:
    policy = settings(promotion="no-failure")
    state, _ = start(policy, T0)
    state = decide(state, judged(Verdict.RUNNING), at(120), policy).state
    outcome = decide(state, judged(Verdict.RUNNING), at(240), policy)
    assert outcome.decision is Decision.PROMOTE


def test_fail_rolls_back_at_once_from_any_step() -> None:
    state, _ = start(settings(), T0)
    outcome = decide(state, judged(Verdict.FAIL, 3), at(10), settings())
    assert outcome.decision is Decision.ROLLBACK and outcome.weight == 0
    assert outcome.state.status is AnalysisStatus.ROLLED_BACK
    assert "failed at round 3" in outcome.reason


def test_failed_rounds_halt_after_the_limit() -> None:
    state, _ = start(settings(max_failed_rounds=2), T0)
    first = decide(state, None, at(10), settings(max_failed_rounds=2), error="timeout")
    assert first.decision is Decision.CONTINUE and first.state.failed_rounds == 1
    second = decide(first.state, None, at(20), settings(max_failed_rounds=2), error="timeout")
    assert second.decision is Decision.HOLD
    assert second.state.status is AnalysisStatus.HALTED
    assert "2 consecutive rounds without data" in second.reason and "timeout" in second.reason
    # A halted analysis decides nothing until an operator resumes it.
    assert decide(second.state, judged(Verdict.PASS), at(30), settings()).decision is Decision.HOLD


def test_a_good_round_resets_the_failed_round_count() -> None:
    state, _ = start(settings(max_failed_rounds=2), T0)
    state = decide(state, None, at(10), settings(max_failed_rounds=2)).state
    state = decide(state, judged(Verdict.RUNNING), at(20), settings(max_failed_rounds=2)).state
    outcome = decide(state, None, at(30), settings(max_failed_rounds=2))
    assert outcome.decision is Decision.CONTINUE


def test_failed_rounds_roll_back_when_configured() -> None:
    policy = settings(max_failed_rounds=1, on_failed_rounds="rollback")
    state, _ = start(policy, T0)
    outcome = decide(state, None, at(10), policy)
    assert outcome.decision is Decision.ROLLBACK and outcome.weight == 0


@pytest.mark.parametrize(
    ("policy", "decision", "status"),
    [
        ("rollback", Decision.ROLLBACK, AnalysisStatus.INCONCLUSIVE),
        ("hold", Decision.HOLD, AnalysisStatus.HALTED),
    ],
)
def test_budget_without_pass_is_inconclusive(
    policy: str, decision: Decision, status: AnalysisStatus
) -> None:
    config = settings(on_inconclusive=policy, max_rounds=3)
    state, _ = start(config, T0)
    state = decide(state, judged(Verdict.RUNNING), at(120), config).state
    state = decide(state, judged(Verdict.RUNNING), at(240), config).state
    assert budget_reached(state, config, at(300))
    outcome = decide(state, judged(Verdict.INCONCLUSIVE, 3), at(300), config)
    assert (outcome.decision, outcome.state.status) == (decision, status)
    assert "inconclusive" in outcome.reason


def test_max_duration_is_a_budget_too() -> None:
    config = AnalysisSettings(steps=STEPS, max_duration=600)
    state, _ = start(config, T0)
    assert not budget_reached(state, config, at(599))
    assert budget_reached(state, config, at(600))
    outcome = decide(state, judged(Verdict.RUNNING), at(601), config)
    assert outcome.decision is Decision.ROLLBACK
    assert outcome.state.status is AnalysisStatus.INCONCLUSIVE


def test_manual_gates() -> None:
    state, _ = start(settings(), T0)
    paused = command(state, "pause", at(5), settings())
    assert paused.state.status is AnalysisStatus.PAUSED and paused.decision is Decision.HOLD
    assert decide(paused.state, judged(Verdict.FAIL), at(6), settings()).decision is Decision.HOLD
    resumed = command(paused.state, "resume", at(7), settings())
    assert resumed.state.status is AnalysisStatus.RUNNING
    aborted = command(resumed.state, "abort", at(8), settings())
    assert aborted.decision is Decision.ROLLBACK and aborted.weight == 0
    assert aborted.state.status is AnalysisStatus.ABORTED
    promoted = command(state, "promote", at(9), settings())
    assert promoted.decision is Decision.PROMOTE and promoted.weight == 100
    with pytest.raises(ValueError, match="already"):
        command(aborted.state, "resume", at(10), settings())
    with pytest.raises(ValueError, match="already running"):
        command(state, "resume", at(10), settings())


def test_state_roundtrips_through_json() -> None:
    state, _ = start(settings(), T0)
    state = decide(state, None, at(10), settings(), error="boom").state
    assert EngineState.from_json(state.to_json()) == state


class _Recorder:
    """A judge that records the `final` flag it was given and answers `verdict`."""

    name = "recorder"

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.finals: list[bool] = []

    def initial_state(self) -> dict[str, object]:
        return {"rounds": 0}

    def update(
        self, state: dict[str, object], round: RoundData, *, final: bool = False
    ) -> tuple[dict[str, object], Judgement]:
        self.finals.append(final)
        return {"rounds": int(state["rounds"]) + 1}, judged(self.verdict)  # type: ignore[call-overload]


def data(seconds: float, error: str | None = None) -> RoundData:
    return RoundData(canary={}, baseline={}, end=at(seconds), error=error)


def test_step_warmup_judges_nothing_but_a_failed_warmup_counts() -> None:
    state, _ = start(settings(), T0)
    judge = _Recorder(Verdict.PASS)
    taken = step(judge, None, data(0), T0, settings(), index=0, state=state)
    assert taken.outcome is None and taken.judgement is None and judge.finals == []
    failed = step(judge, None, data(0, "timeout"), T0, settings(), index=0, state=state)
    assert failed.outcome is not None and failed.outcome.state.failed_rounds == 1
    assert failed.judgement is None and judge.finals == []


def test_step_carries_the_judge_state_and_decides() -> None:
    state, _ = start(settings(), T0)
    judge = _Recorder(Verdict.FAIL)
    taken = step(judge, None, data(60), at(60), settings(), index=1, state=state)
    assert taken.judge_state == {"rounds": 1}
    assert taken.outcome is not None and taken.outcome.decision is Decision.ROLLBACK
    assert taken.finished
    assert stored_verdict(taken.outcome.state.status, taken.judgement) is Verdict.FAIL


def test_step_error_round_updates_the_judge_state_but_gives_no_judgement() -> None:
    state, _ = start(settings(), T0)
    taken = step(
        _Recorder(Verdict.FAIL), None, data(60, "boom"), at(60), settings(), index=1, state=state
    )
    assert taken.judgement is None and taken.judge_state == {"rounds": 1}
    assert taken.outcome is not None and taken.outcome.decision is Decision.CONTINUE


def test_step_judged_only_budget_counts_rounds_from_the_start() -> None:
    judge = _Recorder(Verdict.RUNNING)
    limited = settings(max_rounds=3)
    for index in (1, 2, 3):
        taken = step(
            judge, None, data(60 * index), at(60 * index), limited, index=index, started_at=T0
        )
        assert taken.outcome is None
    assert judge.finals == [False, False, True]
    step(judge, None, data(60), at(60), limited, index=1, started_at=T0, final=True)
    assert judge.finals[-1] is True


def test_a_judged_only_analysis_closes_at_a_fail_or_at_its_budget() -> None:
    running = step(
        _Recorder(Verdict.RUNNING), None, data(60), at(60), settings(), index=1, started_at=T0
    )
    assert running.closing is None
    failed = step(
        _Recorder(Verdict.FAIL), None, data(60), at(60), settings(), index=1, started_at=T0
    )
    assert failed.closing is not None
    assert failed.closing.status is AnalysisStatus.COMPLETED
    assert failed.closing.verdict is None  # the judged FAIL stays the stored verdict
    assert failed.closing.reason == "metric fail"
    last = step(
        _Recorder(Verdict.INCONCLUSIVE),
        None,
        data(60),
        at(60),
        settings(max_rounds=1),
        index=1,
        started_at=T0,
    )
    assert last.final and last.closing is not None
    error = step(
        _Recorder(Verdict.FAIL), None, data(60, "boom"), at(60), settings(), index=1, started_at=T0
    )
    assert error.closing is None  # a round without data ends nothing


def test_a_window_closes_with_its_last_verdict_or_inconclusive() -> None:
    passed = window_closing(judged(Verdict.PASS), failed_rounds=0)
    assert (passed.status, passed.verdict) == (AnalysisStatus.COMPLETED, Verdict.PASS)
    assert passed.reasons == ("metric pass",)
    unfinished = window_closing(judged(Verdict.RUNNING), failed_rounds=2)
    assert unfinished.verdict is Verdict.INCONCLUSIVE
    assert unfinished.reason == "metric running; 2 round(s) failed to query Prometheus"
    nothing = window_closing(None, failed_rounds=0)
    assert nothing.verdict is Verdict.INCONCLUSIVE
    assert nothing.reasons == ("no round could be judged",)
    aborted = warmup_failed("Prometheus timed out")
    assert (aborted.status, aborted.verdict) == (AnalysisStatus.ABORTED, None)


def test_an_inconclusive_rollout_is_stored_inconclusive_whatever_it_judged() -> None:
    assert stored_verdict(AnalysisStatus.INCONCLUSIVE, judged(Verdict.RUNNING)) is (
        Verdict.INCONCLUSIVE
    )
    assert stored_verdict(AnalysisStatus.HALTED, None) is None


def test_a_step_counts_from_when_its_weight_is_applied() -> None:
    state, _ = start(settings(), T0)
    # the start action reached the VirtualService 10 minutes later (daemon down, 404s)
    applied = weight_applied(state, "start", at(600))
    assert applied.step_started_at == at(600) and applied.started_at == at(600)
    assert decide(applied, judged(Verdict.RUNNING), at(660), settings()).decision is (
        Decision.CONTINUE
    )
    assert decide(applied, judged(Verdict.RUNNING), at(720), settings()).decision is (
        Decision.ADVANCE
    )
    # a round carrying out its own action passes its own time: the clock stays
    advanced = decide(applied, judged(Verdict.RUNNING), at(720), settings()).state
    assert weight_applied(advanced, "advance", at(720)) == advanced
    # other kinds of action do not touch the clock
    assert weight_applied(advanced, "rollback", at(900)) == advanced


def test_resume_after_a_halt_starts_the_step_over() -> None:
    state, _ = start(settings(max_failed_rounds=1), T0)
    halted = decide(state, None, at(60), settings(max_failed_rounds=1), error="HTTP 503").state
    assert halted.status is AnalysisStatus.HALTED
    resumed = command(halted, "resume", at(600), settings()).state
    assert resumed.step_started_at == at(600)
    assert decide(resumed, judged(Verdict.RUNNING), at(660), settings()).decision is (
        Decision.CONTINUE
    )
