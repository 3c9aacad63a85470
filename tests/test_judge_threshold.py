"""The `threshold` judge: Argo `failureLimit` / Flagger `threshold` style checks."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_harness import OpenMetricsWriter, le_text, start_backfilled

from canary.config import AnalysisSettings, ThresholdMetric
from canary.judge import judge_rounds, make_judge
from canary.judge.round_values import bucket_quantile
from canary.judge.threshold import ThresholdJudge
from canary.model import Counts, Histogram, RoundData, Verdict

SETTINGS = AnalysisSettings()


def _rounds(values: list[float | None], name: str = "rate") -> list[RoundData]:
    # The baseline carries a value the threshold judge must ignore.
    return [RoundData(canary={name: v}, baseline={name: -1.0}) for v in values]


def _verdicts(judge: ThresholdJudge, rounds: list[RoundData]) -> list[tuple[Verdict, int | None]]:
    return [(j.verdict, j.round) for j in judge_rounds(judge, rounds)]


def test_make_judge_builds_the_threshold_judge() -> None:
    judge = make_judge("threshold", [ThresholdMetric(name="rate", kind="value", min=0.9)], SETTINGS)
    assert isinstance(judge, ThresholdJudge)


def test_cumulative_limit_fails_when_failures_exceed_it_as_argo_does() -> None:
    metric = ThresholdMetric(name="rate", kind="value", min=0.95, failure_limit=2)
    judge = ThresholdJudge([metric], SETTINGS)
    # Failures at rounds 1, 3 and 5; successes between them do not reset the count.
    verdicts = _verdicts(judge, _rounds([0.9, 0.99, 0.9, 0.99, 0.9, 0.99]))
    assert verdicts[:4] == [(Verdict.RUNNING, None)] * 4
    assert verdicts[4:] == [(Verdict.FAIL, 5), (Verdict.FAIL, 5)]


def test_default_limit_zero_fails_on_the_first_failed_measurement() -> None:
    judge = ThresholdJudge([ThresholdMetric(name="rate", kind="value", max=500)], SETTINGS)
    assert _verdicts(judge, _rounds([100, 501, 100])) == [
        (Verdict.RUNNING, None),
        (Verdict.FAIL, 2),
        (Verdict.FAIL, 2),
    ]


def test_consecutive_limit_counts_failures_in_a_row_only() -> None:
    metric = ThresholdMetric(name="rate", kind="value", min=0.95, failure_limit=1, consecutive=True)
    judge = ThresholdJudge([metric], SETTINGS)
    alternating = _verdicts(judge, _rounds([0.9, 0.99, 0.9, 0.99, 0.9, 0.99]))
    assert alternating[-1] == (Verdict.PASS, 6)  # 3 failures, never 2 in a row
    in_a_row = _verdicts(judge, _rounds([0.99, 0.9, 0.9, 0.99]))
    assert in_a_row[2:] == [(Verdict.FAIL, 3), (Verdict.FAIL, 3)]


def test_pass_only_at_the_budget_and_bounds_are_inclusive() -> None:
    metric = ThresholdMetric(name="rate", kind="value", min=0.95, max=1.0)
    judgements = judge_rounds(ThresholdJudge([metric], SETTINGS), _rounds([0.95, 1.0, 0.97]))
    assert [j.verdict for j in judgements] == [Verdict.RUNNING, Verdict.RUNNING, Verdict.PASS]
    last = judgements[-1]
    assert last.round == 3
    assert last.metrics["rate"].statistics["successful"] == 3
    assert last.metrics["rate"].statistics["last_value"] == 0.97


def test_no_data_is_inconclusive_by_default_and_never_a_pass() -> None:
    metric = ThresholdMetric(name="rate", kind="value", min=0.95)
    judge = ThresholdJudge([metric], SETTINGS)
    assert _verdicts(judge, _rounds([None, None, None]))[-1] == (Verdict.INCONCLUSIVE, 3)
    # Gaps neither fail nor break a run of failures.
    consecutive = ThresholdMetric(
        name="rate", kind="value", min=0.95, failure_limit=1, consecutive=True
    )
    gaps = _verdicts(ThresholdJudge([consecutive], SETTINGS), _rounds([0.9, None, 0.9]))
    assert gaps[-1] == (Verdict.FAIL, 3)
    last = judge_rounds(judge, _rounds([0.99, math.nan, None]))[-1]
    assert last.verdict is Verdict.PASS
    assert last.metrics["rate"].statistics["inconclusive"] == 2


@pytest.mark.parametrize(("policy", "expected"), [("fail", (Verdict.FAIL, 2)), ("pass", None)])
def test_no_data_policy_fail_or_pass(policy: str, expected) -> None:
    metric = ThresholdMetric(name="rate", kind="value", min=0.95, no_data=policy)
    verdicts = _verdicts(ThresholdJudge([metric], SETTINGS), _rounds([0.99, None, 0.99]))
    if expected is None:
        assert verdicts[-1] == (Verdict.PASS, 3)
    else:
        assert verdicts[1] == expected


def test_counts_are_judged_as_success_rate_and_idle_rounds_have_no_value() -> None:
    metric = ThresholdMetric(name="errors", kind="counts", min=0.95)
    rounds = [
        RoundData(canary={"errors": Counts(total=1000, failed=50)}, baseline={}),
        RoundData(canary={"errors": Counts(total=0, failed=0)}, baseline={}),
        RoundData(canary={"errors": Counts(total=1000, failed=51)}, baseline={}),
    ]
    judgements = judge_rounds(ThresholdJudge([metric], SETTINGS), rounds)
    evidence = judgements[-1].metrics["errors"].evidence
    assert [e["outcome"] for e in evidence] == ["successful", "no_data", "failed"]
    assert evidence[0]["value"] == pytest.approx(0.95)
    assert judgements[-1].verdict is Verdict.FAIL and judgements[-1].round == 3


def test_histogram_p99_against_a_maximum() -> None:
    bounds = (50.0, 100.0, 250.0, 500.0, math.inf)
    good = Histogram(bounds=bounds, buckets=(900, 990, 1000, 1000, 1000))
    slow = Histogram(bounds=bounds, buckets=(500, 800, 950, 980, 1000))
    metric = ThresholdMetric(name="latency", kind="histogram", quantiles=[0.99], max=250)
    rounds = [
        RoundData(canary={"latency": good}, baseline={}),
        RoundData(canary={"latency": slow}, baseline={}),
    ]
    judgements = judge_rounds(ThresholdJudge([metric], SETTINGS), rounds)
    evidence = judgements[-1].metrics["latency"].evidence
    # p99: rank 990 of 1000 -> 100 ms; slow: rank 990 is in the +Inf bucket -> 500 ms.
    assert [e["value"] for e in evidence] == [pytest.approx(100.0), 500.0]
    assert judgements[-1].verdict is Verdict.FAIL
    mean = ThresholdMetric(name="latency", kind="histogram", max=250)
    first = judge_rounds(ThresholdJudge([mean], SETTINGS), rounds[:1])[0]
    # Bucket mean: 900 at 25, 90 at 75, 10 at 175.
    assert first.metrics["latency"].evidence[0]["value"] == pytest.approx(31.0)


def test_rounds_with_errors_are_not_measurements() -> None:
    metric = ThresholdMetric(name="rate", kind="value", min=0.95, failure_limit=1, consecutive=True)
    judge = ThresholdJudge([metric], SETTINGS)
    rounds = [
        RoundData(canary={"rate": 0.9}, baseline={}),
        RoundData(canary={}, baseline={}, error="prometheus: timeout"),
        RoundData(canary={"rate": 0.9}, baseline={}),
    ]
    judgements = judge_rounds(judge, rounds)
    assert judgements[1].verdict is Verdict.RUNNING
    assert judgements[1].metrics["rate"].evidence[-1] == {
        "round": 2,
        "skipped": "prometheus: timeout",
    }
    assert (judgements[2].verdict, judgements[2].round) == (Verdict.FAIL, 3)


def test_several_metrics_combine_fail_wins_and_pass_needs_all() -> None:
    metrics = [
        ThresholdMetric(name="rate", kind="value", min=0.95),
        ThresholdMetric(name="latency", kind="value", max=500),
    ]
    judge = ThresholdJudge(metrics, SETTINGS)
    rounds = [
        RoundData(canary={"rate": 0.99, "latency": 100.0}, baseline={}),
        RoundData(canary={"rate": 0.99, "latency": 900.0}, baseline={}),
        RoundData(canary={"rate": 0.99, "latency": 100.0}, baseline={}),
    ]
    last = judge_rounds(judge, rounds)[-1]
    assert last.verdict is Verdict.FAIL and last.round == 2
    assert last.metrics["latency"].verdict is Verdict.FAIL
    assert last.metrics["rate"].verdict is Verdict.PASS
    silent = [RoundData(canary={"rate": 0.99}, baseline={})] * 2
    last = judge_rounds(judge, silent)[-1]
    assert last.verdict is Verdict.INCONCLUSIVE  # latency never measured


def test_state_is_json_and_resuming_gives_the_same_judgement() -> None:
    metric = ThresholdMetric(name="rate", kind="value", min=0.95, failure_limit=1)
    judge = ThresholdJudge([metric], SETTINGS)
    rounds = _rounds([0.9, None, 0.99, 0.9])
    state = judge.initial_state()
    for round_data in rounds[:2]:
        state, _ = judge.update(state, round_data)
    state = judge.read_state(json.loads(json.dumps(state.to_json(), allow_nan=False)))
    for index, round_data in enumerate(rounds[2:]):
        state, resumed = judge.update(state, round_data, final=index == 1)
    assert resumed == judge_rounds(judge, rounds)[-1]
    assert resumed.verdict is Verdict.FAIL and resumed.round == 4


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (ThresholdMetric(name="rate", kind="value"), "metric 'rate': the threshold judge needs"),
        (ThresholdMetric(name="rate", kind="value", min=2, max=1), "min \\(2\\) is greater"),
        (
            ThresholdMetric(name="lat", kind="histogram", max=1, quantiles=[0.5, 0.9]),
            "metric 'lat': quantiles must list exactly one",
        ),
        (
            ThresholdMetric(name="lat", kind="histogram", max=1, quantiles=[1.5]),
            "quantiles\\[0\\] must be in \\(0, 1\\)",
        ),
    ],
)
def test_bad_configuration_is_refused_with_the_metric_named(metric, message) -> None:
    with pytest.raises(ValueError, match=message):
        ThresholdJudge([metric], SETTINGS)


def test_an_observation_of_the_wrong_kind_is_refused() -> None:
    judge = ThresholdJudge([ThresholdMetric(name="rate", kind="value", min=0.9)], SETTINGS)
    bad = RoundData(canary={"rate": Counts(total=1, failed=0)}, baseline={})
    with pytest.raises(ValueError, match=r"'rate' is a value metric but got counts \(round 1"):
        judge.update(judge.initial_state(), bad)


def test_bucket_quantile_matches_prometheus_histogram_quantile(tmp_path) -> None:
    # The per-round quantile must be what a Flagger/Argo p99 query returns: compare
    # with Prometheus 2.42's histogram_quantile over the same buckets.
    cases = {
        "envoy": Histogram(
            bounds=(0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, math.inf),
            buckets=(3, 10, 120, 400, 800, 930, 975, 991, 998, 1000, 1003),
        ),
        "inf-tail": Histogram(bounds=(10.0, 20.0, math.inf), buckets=(10, 30, 40)),
        "single": Histogram(bounds=(100.0, math.inf), buckets=(7, 7)),
    }
    at = 1_700_000_000.0
    writer = OpenMetricsWriter()
    for case, histogram in cases.items():
        for bound, count in zip(histogram.bounds, histogram.buckets, strict=True):
            writer.add("latency_bucket", {"case": case, "le": le_text(bound)}, at, count)
    server = start_backfilled(writer.text(), tmp_path, expected_samples=writer.samples)
    try:
        for q in (0.05, 0.1, 0.5, 0.9, 0.99, 0.999):
            result = server.query(f"histogram_quantile({q}, latency_bucket)", at)
            got = {r["metric"]["case"]: float(r["value"][1]) for r in result}
            assert set(got) == set(cases)
            for case, histogram in cases.items():
                assert bucket_quantile(q, histogram) == pytest.approx(got[case], rel=1e-12), (
                    case,
                    q,
                )
    finally:
        server.stop()
