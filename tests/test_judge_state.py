"""Typed judge states: they read every state stored so far and write it back unchanged.

The recorded states (tests/judge_states/, see judge_state_cases.py) were stored by the
judges before their states were typed; a stored analysis must continue, be exported
and be replayed exactly as recorded.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from judge_state_cases import (
    ARMS,
    CASES,
    OLDER_FORMS,
    case_states,
    continued_from,
    older_form,
    recorded_continuations,
    recorded_states,
    rounds_of,
)

from canary.config import AnalysisSettings, MannWhitneyMetric, ThresholdMetric
from canary.errors import JudgeStateError
from canary.judge import judge_rounds, make_judge
from canary.judge.states import MannWhitneyState, SequentialState, ThresholdState
from canary.model import MetricKind

STATE_TYPES = {
    "sequential": SequentialState,
    "mann_whitney": MannWhitneyState,
    "threshold": ThresholdState,
}
RECORDED = [(case, arm) for case in CASES for arm in ARMS]


def _text(data: Any) -> str:
    """The stored text: key order and NaN included (NaN != NaN in a dict comparison)."""
    return json.dumps(data)


def _same(computed: Any, recorded: Any) -> bool:
    """The same stored structure (keys in order, NaN where NaN) with floats equal to 1e-12.

    The recordings were computed on another machine: NumPy's vectorised log and exp
    pick their instructions by CPU and may differ there in the last bit.
    """
    if isinstance(recorded, dict):
        return (
            isinstance(computed, dict)
            and list(computed) == list(recorded)
            and all(_same(computed[k], recorded[k]) for k in recorded)
        )
    if isinstance(recorded, list):
        return (
            isinstance(computed, list)
            and len(computed) == len(recorded)
            and all(_same(c, r) for c, r in zip(computed, recorded, strict=True))
        )
    if isinstance(recorded, float) and isinstance(computed, float):
        if math.isnan(recorded):
            return math.isnan(computed)
        return math.isclose(computed, recorded, rel_tol=1e-12, abs_tol=1e-300)
    return type(computed) is type(recorded) and computed == recorded


def _judge(case: str) -> Any:
    judge_name, metrics = CASES[case]
    settings = AnalysisSettings(judge=judge_name, metrics=metrics)
    return make_judge(judge_name, settings.metrics, settings)


@pytest.mark.parametrize(("case", "arm"), RECORDED)
def test_every_recorded_state_is_read_and_written_back_unchanged(case: str, arm: str) -> None:
    judge = _judge(case)
    recorded = recorded_states(case, arm)
    assert len(recorded) == 10
    for data in recorded:
        state = judge.read_state(data)
        assert isinstance(state, STATE_TYPES[CASES[case][0]])
        assert _text(state.to_json()) == _text(data)
        assert judge.read_state(json.loads(_text(state.to_json()))) == state


# `sequential` was recorded before the sequential judge's statistics changed;
# `sequential_pods` with the last untyped sequential judge, before the robust
# evidence's spread between rounds began to count its prior as a baseline round: its
# states are the same but for what that spread decides (`_without_robust_scores`).
SAME_STATISTICS = [(c, a) for c, a in RECORDED if not c.startswith("sequential")]
SAME_BUT_ROBUST = [(c, a) for c, a in RECORDED if c == "sequential_pods"]


def _without_robust_scores(data: Any) -> Any:
    """The stored data without what the robust evidence's statistics decide: each
    track's robust start sums (`starts`: logs, a, b), the round a FAIL was reached and
    the estimates kept from a verdict on."""
    data = json.loads(_text(data))
    for entry in data["metrics"].values():
        entry.pop("fail_round", None)
        entry.pop("estimates", None)
        for track in entry["tracks"]:
            for key in ("logs", "a", "b"):
                (track.get("starts") or {}).pop(key, None)
    return data


@pytest.mark.parametrize(("case", "arm"), SAME_STATISTICS)
def test_the_typed_judges_store_exactly_what_the_untyped_ones_stored(case: str, arm: str) -> None:
    assert _same(case_states(case, arm), recorded_states(case, arm))


@pytest.mark.parametrize(("case", "arm"), SAME_BUT_ROBUST)
def test_the_typed_sequential_judge_stores_what_the_untyped_one_stored(case: str, arm: str) -> None:
    assert _same(
        [_without_robust_scores(s) for s in case_states(case, arm)],
        [_without_robust_scores(s) for s in recorded_states(case, arm)],
    )


@pytest.mark.parametrize(("case", "arm"), RECORDED)
def test_an_analysis_continues_from_a_recorded_state(case: str, arm: str) -> None:
    judge = _judge(case)
    rounds = rounds_of(case, arm)
    state = judge.read_state(recorded_states(case, arm)[5])  # after round 5
    for data in rounds[5:]:
        state, judgement = judge.update(state, data, final=data is rounds[-1])
    assert state.round == len(rounds)
    if (case, arm) in SAME_STATISTICS:
        assert judgement == judge_rounds(judge, rounds)[-1]
        assert _same(json.loads(_text(state.to_json())), recorded_states(case, arm)[-1])
    if (case, arm) in SAME_BUT_ROBUST:
        assert _same(
            _without_robust_scores(state.to_json()),
            _without_robust_scores(recorded_states(case, arm)[-1]),
        )


@pytest.mark.parametrize("form", OLDER_FORMS)
@pytest.mark.parametrize("arm", ARMS)
def test_an_older_stored_form_is_read_written_back_and_continued_as_before(
    form: str, arm: str
) -> None:
    judge = _judge("sequential_pods")
    stored = older_form(form, arm)
    assert _text(judge.read_state(stored).to_json()) == _text(stored)
    assert _same(
        _without_robust_scores(continued_from(form, arm)),
        _without_robust_scores(recorded_continuations(arm)[form]),
    )


def test_a_state_stored_before_pods_were_kept_by_name_keeps_its_pod_spread() -> None:
    state = _judge("sequential_pods").read_state(older_form("pod_sums", "bad"))
    spread = state.metrics["errors"].tracks[0].spread
    assert spread is not None and spread.pods is None
    assert spread.legacy == {"pod_ss": 0.004, "pod_df": 27, "pod_neff": 3900.0, "pod_max": 10}


@pytest.mark.parametrize(
    ("case", "edit", "field", "message"),
    [
        ("mann_whitney", lambda s: s.pop("values"), "values", "missing"),
        (
            "mann_whitney",
            lambda s: s["values"]["errors"]["canary"].__setitem__(2, "0.1"),
            "values.errors.canary[2]",
            "expected a number or null, got '0.1'",
        ),
        (
            "mann_whitney",
            lambda s: s["evidence"]["latency"][0].pop("baseline"),
            "evidence.latency[0].baseline",
            "missing",
        ),
        (
            "mann_whitney",
            lambda s: s.__setitem__("round", True),
            "round",
            "expected an integer, got True",
        ),
        ("mann_whitney", lambda s: s["values"].pop("rps"), "values.rps", "missing: the analysis"),
        (
            "threshold",
            lambda s: s["metrics"]["errors"].__setitem__("failed", -1),
            "metrics.errors.failed",
            "expected a count (>= 0), got -1",
        ),
        (
            "threshold",
            lambda s: s["metrics"]["rps"]["evidence"][1].__setitem__("outcome", "passed"),
            "metrics.rps.evidence[1].outcome",
            "expected one of successful, failed, no_data, got 'passed'",
        ),
        (
            "threshold",
            lambda s: s["metrics"]["latency"].__setitem__("streak", 2),
            "metrics.latency.streak",
            "not a key of this state",
        ),
        (
            "sequential",
            lambda s: s.__setitem__("judge", "threshold"),
            "judge",
            "expected 'sequential', got 'threshold'",
        ),
        (
            "sequential",
            lambda s: s["metrics"].__setitem__("errors", [1, 2]),
            "metrics.errors",
            "expected an object, got [1, 2]",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["errors"]["tracks"][0]["loglik"].__setitem__(3, None),
            "metrics.errors.tracks[0].loglik[3]",
            "expected a number, got None",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["latency"]["tracks"][2]["spread"]["pods"].__setitem__("b1", [3]),
            "metrics.latency.tracks[2].spread.pods.b1",
            "expected 2 counts, got [3]",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["errors"]["tracks"][0]["starts"]["log_w"].pop(),
            "metrics.errors.tracks[0].starts.log_w",
            "expected 6 values (one per start), got 5",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["errors"]["tracks"][0]["canary"].__setitem__(1, -2),
            "metrics.errors.tracks[0].canary[1]",
            "expected a count (>= 0), got -2",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["latency"].__setitem__("fail_round", "3"),
            "metrics.latency.fail_round",
            "expected an integer, got '3'",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["latency"]["tracks"].pop(),
            "metrics.latency.tracks",
            "expected 3 tracks, got 2",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["errors"].update(bounds=[50.0], warmup_round=1),
            "metrics.errors",
            "a histogram metric's state, the metric is counts",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["errors"]["tracks"][0].__setitem__("lates", []),
            "metrics.errors.tracks[0].lates",
            "not a key of this state",
        ),
        (
            "sequential",
            lambda s: s["metrics"]["errors"]["tracks"][0]["late"].pop(),
            "metrics.errors.tracks[0].late",
            "expected 6 values, got 5",
        ),
    ],
)
def test_a_malformed_state_is_refused_naming_the_field(
    case: str, edit: Any, field: str, message: str
) -> None:
    data = recorded_states(case, "bad")[6]
    edit(data)
    with pytest.raises(JudgeStateError) as caught:
        _judge(case).read_state(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"judge state: {field}: {message}")


def test_a_state_of_another_analysis_is_refused_by_its_metrics() -> None:
    data = recorded_states("threshold", "good")[3]
    other = [ThresholdMetric(name="availability", kind=MetricKind.VALUE, min=0.99)]
    settings = AnalysisSettings(judge="threshold", metrics=other)
    with pytest.raises(JudgeStateError, match=r"metrics\.availability: missing"):
        make_judge("threshold", settings.metrics, settings).read_state(data)
    mann_whitney = [MannWhitneyMetric(name="errors", kind=MetricKind.COUNTS)]
    settings = AnalysisSettings(judge="mann_whitney", metrics=mann_whitney)
    with pytest.raises(JudgeStateError, match=r"^judge state: values: missing"):
        make_judge("mann_whitney", settings.metrics, settings).read_state(data)
