"""Judgements and a stored daemon analysis made by the real judge and engine, for the
report, wording and notification tests."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from canary.config import AnalysisSettings, SequentialMetric, StepConfig
from canary.engine import decide, start
from canary.judge import make_judge
from canary.model import ActionState, Counts, Histogram, Judgement, RoundData
from canary.store.analyses import ActionIntent, create_analysis, mark_action, record_round
from canary.store.database import connect, sessions

__all__ = ["T0", "judge_counts", "regressing_analysis"]

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
BOUNDS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, math.inf)


def _histogram(n: int, slow: float) -> Histogram:
    shares = [0.05, 0.25, 0.55, 0.85, 0.97 - slow, 0.995 - slow / 2, 1.0]
    return Histogram(BOUNDS, tuple(round(n * s) for s in shares))


def regressing_analysis(url: str, minutes: int = 1) -> str:
    """A real judge and the real engine over 12 rounds of `minutes`; errors rise at round 6."""
    settings = AnalysisSettings(
        interval=60 * minutes,
        steps=[
            StepConfig(weight=10, duration=180 * minutes),
            StepConfig(weight=40, duration=180 * minutes),
        ],
    )
    judge = make_judge("sequential", settings.metrics, settings)
    factory = sessions(connect(url))
    with factory.begin() as session:
        analysis = create_analysis(
            session,
            canary="checkout",
            source="daemon",
            judge="sequential",
            settings=settings.model_dump(mode="json"),
            now=T0,
        )
        state, _ = start(settings, T0)
        judge_state = judge.initial_state()
        for index in range(1, 13):
            now = T0 + timedelta(minutes=index * minutes)
            canary_n = 60 * state.weight
            failed = round(canary_n * (0.001 if index < 6 else 0.05))
            data = RoundData(
                canary={"errors": Counts(canary_n, failed), "latency": _histogram(canary_n, 0)},
                baseline={"errors": Counts(6000, 6), "latency": _histogram(6000, 0)},
                start=now - timedelta(minutes=minutes),
                end=now,
            )
            judge_state, judgement = judge.update(judge_state, data)
            outcome = decide(state, judgement, now, settings)
            intent = (
                ActionIntent(outcome.decision.value, outcome.weight, state.weight)
                if outcome.weight is not None
                else None
            )
            _, action = record_round(
                session,
                analysis,
                index=index,
                data=data,
                judgement=judgement,
                judge_state=judge_state.to_json(),
                snapshot={},
                decision=outcome.decision,
                weight=state.weight,
                step=state.step,
                action=intent,
                now=now,
            )
            if action is not None:
                mark_action(session, action, ActionState.DONE)
            state = outcome.state
            if state.status.is_final:
                analysis.status = state.status.value
                analysis.reason = outcome.reason
                break
        return analysis.id


def judge_counts(make, *, failing: bool, rounds: int = 8) -> Judgement:
    """The real sequential judge over `rounds` rounds of counts (5% vs 1% errors if failing)."""
    settings = AnalysisSettings(metrics=[SequentialMetric(name="errors", kind="counts")])
    judge = make("sequential", settings.metrics, settings)
    state = judge.initial_state()
    judgement = None
    for _ in range(rounds):
        canary = Counts(5000, 250 if failing else 50)
        data = RoundData(canary={"errors": canary}, baseline={"errors": Counts(50000, 500)})
        state, judgement = judge.update(state, data)
    assert judgement is not None
    return judgement
