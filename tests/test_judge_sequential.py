"""The sequential judge: formulas on hand-computed tables, invariances, extremes, verdicts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import nchypergeom_fisher
from scipy.stats.contingency import odds_ratio

from canary.config import AnalysisSettings, SequentialMetric
from canary.judge import judge_rounds, make_judge
from canary.judge.combine import combine
from canary.judge.hypergeometric import conditional_mle, informative, round_loglik, round_logliks
from canary.judge.sequential import SequentialJudge, choose_bounds
from canary.judge.states import SequentialState
from canary.metrics.simulated_traffic import ENVOY_BUCKETS, ArmModel, TrafficModel, simulate
from canary.model import Counts, Histogram, MetricKind, MetricResult, RoundData, Verdict

SETTINGS = AnalysisSettings()


def counts_round(x: int, n: int, y: int, m: int, name: str = "errors") -> RoundData:
    return RoundData(canary={name: Counts(n, x)}, baseline={name: Counts(m, y)})


def one_round_stats(x: int, n: int, y: int, m: int, **metric: object) -> dict:
    """Statistics after one round of the request-level process alone."""
    judge = SequentialJudge([SequentialMetric(name="errors", robust=False, **metric)], SETTINGS)
    _, judgement = judge.update(judge.initial_state(), counts_round(x, n, y, m))
    return dict(judgement.metrics["errors"].statistics)


#: Weight of the e-process started at round 1 in the start-time mixture: 1 / (1 * 2).
W1 = 0.5


# ---------------------------------------------------------------------- the likelihood


def test_likelihood_ratio_of_a_one_request_table():
    # x=1 of n=1, y=0 of m=1, e=1: w_0 = w_1 = 1, LR(psi; 1) = psi * 2 / (1 + psi).
    lik = round_loglik(1, 1, 0, 1, np.log(np.array([3.0, 0.5])))
    assert lik.loglik == pytest.approx(np.log([6 / 4, 1 / 1.5]), abs=1e-12)


def test_likelihood_ratio_of_a_small_table_by_hand():
    # x=2 of 3, y=1 of 2, e=3: j = 1..3, w = C(3,1)C(2,2)=3, C(3,2)C(2,1)=6, C(3,3)C(2,0)=1.
    # Z(psi) = 3 psi + 6 psi^2 + psi^3, Z(1) = 10; LR(2; 1) = 2^2 * 10 / Z(2) = 40 / 38.
    lik = round_loglik(2, 3, 1, 2, np.log(np.array([2.0])), moments=True)
    assert lik.loglik[0] == pytest.approx(math.log(40 / 38), abs=1e-12)
    # E_2[x] = (1*6 + 2*24 + 3*8) / 38 = 78 / 38.
    assert lik.mean[0] == pytest.approx(78 / 38, abs=1e-12)
    assert lik.var[0] == pytest.approx((6 + 4 * 24 + 9 * 8) / 38 - (78 / 38) ** 2, abs=1e-12)


def test_e_values_of_one_round_by_hand():
    # Same table; FAIL mixture over {2} against tolerance 1 is LR(2; 1) = 20/19, in the
    # start-time mixture with weight w_1 = 1/2 after one round.
    # PASS mixture over {0.75} (= margin 1.5 * 0.5) against 1.5:
    # LR(0.75; 1.5) = 0.5^2 * Z(1.5) / Z(0.75) = 0.25 * 21.375 / 6.046875.
    stats = one_round_stats(2, 3, 1, 2, fail_grid=[2.0], pass_grid=[0.5], margin=1.5)
    assert stats["e_fail"] == pytest.approx(W1 * 20 / 19, rel=1e-12)
    assert stats["e_pass"] == pytest.approx(0.25 * 21.375 / 6.046875, rel=1e-12)
    assert stats["fail_threshold"] == pytest.approx(100.0)  # 1 / alpha_fail, one metric
    assert stats["pass_threshold"] == pytest.approx(20.0)


def test_mixture_is_the_mean_over_the_grid():
    # FAIL grid {2, 4}: M = (LR(2;1) + LR(4;1)) / 2; Z(4) = 12 + 96 + 64 = 172.
    stats = one_round_stats(2, 3, 1, 2, fail_grid=[2.0, 4.0])
    assert stats["e_fail"] == pytest.approx(W1 * (40 / 38 + 16 * 10 / 172) / 2, rel=1e-12)


@pytest.mark.parametrize("table", [(2, 3, 1, 2), (5, 600, 20, 5400), (150, 10000, 100, 10000)])
def test_swapping_the_arms_inverts_the_odds_ratio(table):
    x, n, y, m = table
    psi = np.array([0.2, 0.5, 0.8, 1.25, 2.0, 5.0])
    direct = round_loglik(x, n, y, m, np.log(psi)).loglik
    swapped = round_loglik(y, m, x, n, np.log(1 / psi)).loglik
    # Swapping failures and successes inverts it too.
    flipped = round_loglik(n - x, n, m - y, m, np.log(1 / psi)).loglik
    assert direct == pytest.approx(swapped, abs=1e-9)
    assert direct == pytest.approx(flipped, abs=1e-9)


@pytest.mark.parametrize(
    "table",
    [(5, 600, 20, 5400), (5000, 10000, 5000, 10000), (1500, 10000, 500, 10000), (0, 50, 3, 7)],
)
def test_likelihood_matches_scipy_noncentral_hypergeometric(table):
    x, n, y, m = table
    psi = np.array([0.8, 0.9, 1.1, 1.25, 1.5])
    ours = round_loglik(x, n, y, m, np.log(psi), moments=True)
    e = x + y
    ref = [
        nchypergeom_fisher.logpmf(x, n + m, n, e, p) - nchypergeom_fisher.logpmf(x, n + m, n, e, 1)
        for p in psi
    ]
    assert ours.loglik == pytest.approx(ref, abs=1e-8)
    assert ours.mean == pytest.approx([nchypergeom_fisher.mean(n + m, n, e, p) for p in psi])
    assert ours.var == pytest.approx([nchypergeom_fisher.var(n + m, n, e, p) for p in psi])


def test_millions_of_requests_stay_finite_and_exact():
    # 2 million requests per arm: the windowed sum must equal the full sum.
    x, n, y, m = 21000, 2_000_000, 20000, 2_000_000
    psi = np.log(np.array([0.9, 1.0, 1.05, 1.1, 2.0, 10.0]))
    lik = round_loglik(x, n, y, m, psi)
    assert np.all(np.isfinite(lik.loglik))
    assert lik.loglik[1] == 0.0
    ref = nchypergeom_fisher.logpmf(x, n + m, n, x + y, 1.05) - nchypergeom_fisher.logpmf(
        x, n + m, n, x + y, 1.0
    )
    assert lik.loglik[2] == pytest.approx(ref, abs=1e-6)


def scipy_mle(tables: list[tuple[int, int, int, int]]) -> float:
    """The conditional MLE by root-finding on scipy's noncentral hypergeometric mean."""
    total = sum(t[0] for t in tables)

    def score(log_psi: float) -> float:
        psi = math.exp(log_psi)
        return total - sum(nchypergeom_fisher.mean(n + m, n, x + y, psi) for x, n, y, m in tables)

    return math.exp(brentq(score, -15.0, 15.0, xtol=1e-13))


@pytest.mark.parametrize(
    "tables",
    [
        [(2, 3, 1, 2)],
        [(5, 600, 20, 5400)],
        [(50, 1000, 10, 1000), (40, 1000, 12, 1000), (3, 90, 1, 4000)],
        [(150, 10000, 100, 10000)] * 3,
        [(900, 1000, 10, 1000)],  # odds ratio ~880: far past the interval's grid
        [(21000, 2_000_000, 20000, 2_000_000)],
        # Newton lands exactly on the root (score 0.0) on the way: the estimate is that root.
        [(33, 1000, 100, 10000)] * 2,
        [(27, 1000, 100, 10000)] * 3,
    ],
)
def test_the_estimate_is_the_exact_conditional_mle(tables):
    assert conditional_mle(tables) == pytest.approx(scipy_mle(tables), rel=1e-8)


def test_repeated_tables_estimate_scipys_conditional_odds_ratio():
    # k copies of one table have that table's score times k: the same root.
    rng = np.random.default_rng(7)
    cases = [(33, 1000, 100, 10000), (27, 1000, 100, 10000), (7, 50, 3, 90)]
    cases += [
        (int(rng.integers(1, 80)), 1000, int(rng.integers(1, 300)), 10000) for _ in range(300)
    ]
    for x, n, y, m in cases:
        expected = odds_ratio([[x, n - x], [y, m - y]], kind="conditional").statistic
        for copies in (1, 2, 3):
            assert conditional_mle([(x, n, y, m)] * copies) == pytest.approx(expected, rel=1e-7)


def test_random_tables_estimate_the_root_of_the_conditional_score():
    rng = np.random.default_rng(20261130)
    for _ in range(40):
        tables = []
        for _ in range(int(rng.integers(1, 5))):
            n, m = (int(v) for v in rng.integers(20, 20000, size=2))
            p = float(rng.uniform(0.002, 0.2))
            x = int(rng.binomial(n, min(1.0, p * rng.uniform(0.5, 5.0))))
            tables.append((x, n, int(rng.binomial(m, p)), m))
        if not any(informative(*t) for t in tables):
            continue
        value = conditional_mle(tables)
        if value in (0.0, math.inf):
            continue
        assert value == pytest.approx(scipy_mle(tables), rel=1e-7), tables


def test_the_estimate_at_the_ends_of_the_support():
    assert conditional_mle([(10, 10, 3, 100), (5, 5, 0, 40)]) == math.inf
    assert conditional_mle([(0, 10, 3, 100)]) == 0.0
    assert conditional_mle([(0, 0, 3, 100), (0, 10, 0, 100)]) is None  # no information


def test_the_verdict_reports_the_exact_estimate_without_a_cap():
    judge = make_judge("sequential", [SequentialMetric(name="errors")], SETTINGS)
    state, judgement = judge.initial_state(), None
    tables = [(30, 1000, 10, 1000), (28, 1000, 11, 1000), (300, 1000, 9, 1000)]
    for table in tables:
        running = judgement.metrics["errors"] if table is not tables[0] else None
        assert running is None or running.statistics["odds_ratio"] is None  # until a verdict
        state, judgement = judge.update(state, counts_round(*table))
    result = judgement.metrics["errors"]
    assert result.verdict is Verdict.FAIL and result.round == 3
    # The estimate over every round up to the verdict: ~14, past the interval's grid (10).
    assert result.statistics["odds_ratio"] == pytest.approx(scipy_mle(tables), rel=1e-8)
    assert result.statistics["odds_ratio"] > 10
    assert result.statistics["ci_high"] is None
    assert any("estimate 1" in r and "conditional MLE" in r for r in result.reasons)
    # A canary failing every request: the estimate is unbounded, and JSON-safe.
    _, judgement = judge.update(judge.initial_state(), counts_round(5000, 5000, 50, 5000))
    stats = judgement.metrics["errors"].statistics
    assert judgement.verdict is Verdict.FAIL and stats["odds_ratio"] == "inf"
    json.dumps(stats, allow_nan=False)


def test_uninformative_tables():
    assert not informative(0, 0, 5, 100)  # no canary traffic
    assert not informative(0, 100, 0, 100)  # no failures at all
    assert not informative(100, 100, 100, 100)  # everything failed
    assert informative(1, 100, 0, 100)


# ---------------------------------------------------------------------- evidence over rounds


def loglik_of(state: SequentialState, metric: str = "errors") -> list[float]:
    return list(state.metrics[metric].tracks[0].loglik)


@pytest.mark.parametrize(
    "empty",
    [
        RoundData(canary={}, baseline={}, error="prometheus timed out"),
        RoundData(canary={"errors": None}, baseline={"errors": None}),
        RoundData(canary={"errors": Counts(0, 0)}, baseline={"errors": Counts(5000, 20)}),
        RoundData(canary={"errors": Counts(600, 0)}, baseline={"errors": Counts(5400, 0)}),
        RoundData(canary={"errors": Counts(10, 10)}, baseline={"errors": Counts(20, 20)}),
        RoundData(canary={"errors": Counts(600, 3)}, baseline={}),
    ],
)
def test_rounds_without_data_leave_the_evidence_unchanged(empty):
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    state, before = judge.update(judge.initial_state(), counts_round(9, 600, 40, 5400))
    after_state, after = judge.update(state, empty)
    assert loglik_of(after_state) == loglik_of(state)
    assert (
        after.metrics["errors"].statistics["e_fail"]
        == before.metrics["errors"].statistics["e_fail"]
    )
    assert after_state.round == 2


def test_incremental_equals_batch_and_state_survives_json():
    rng = np.random.default_rng(5)
    rounds = []
    for _ in range(12):
        n, m = int(rng.poisson(800)), int(rng.poisson(7000))
        rounds.append(counts_round(int(rng.binomial(n, 0.012)), n, int(rng.binomial(m, 0.01)), m))
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    state = judge.initial_state()
    for round_data in rounds:
        state = judge.read_state(json.loads(json.dumps(state.to_json())))  # stored, read back
        state, judgement = judge.update(state, round_data)
    params = judge.params["errors"]
    batch = sum(
        round_loglik(r.canary["errors"].failed, r.canary["errors"].total,
                     r.baseline["errors"].failed, r.baseline["errors"].total,
                     params.log_psi).loglik
        for r in rounds
    )  # fmt: skip
    assert loglik_of(state) == pytest.approx(batch.tolist(), abs=1e-9)
    # judge_rounds gives the same last judgement as the manual loop.
    last = judge_rounds(judge, rounds)[-1]
    assert last.metrics["errors"].statistics["e_fail"] == pytest.approx(
        judgement.metrics["errors"].statistics["e_fail"]
    )


def test_a_state_stored_and_read_back_every_round_judges_exactly_as_one_kept_in_memory():
    # The daemon stores the state after every round and reads it back for the next;
    # replay and the Argo endpoint's warm process keep it in memory. Both must give the
    # same evidence to the last bit, past the budget too (where starts stop growing),
    # with per-pod data, histograms and rounds whose queries failed.
    from dataclasses import replace

    metrics = [
        SequentialMetric(name="errors", kind=MetricKind.COUNTS),
        SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM),
    ]
    judge = SequentialJudge(metrics, AnalysisSettings(max_rounds=6))
    model = replace(
        TrafficModel(rps=50, rounds=14, pod_counts=(3, 5), missing_prob=0.15),
        canary=ArmModel(error_rate=0.003, latency_median_ms=60.0),
    )
    rounds = list(simulate(model, 1, seed=3).round_data(0))
    kept = stored = judge.initial_state()
    for k, round_data in enumerate(rounds, 1):
        stored = judge.read_state(json.loads(json.dumps(stored.to_json())))
        kept, from_memory = judge.update(kept, round_data, final=k == len(rounds))
        stored, from_store = judge.update(stored, round_data, final=k == len(rounds))
        assert json.dumps(kept.to_json()) == json.dumps(stored.to_json())
        for name in ("errors", "latency"):
            a, b = from_memory.metrics[name], from_store.metrics[name]
            assert json.dumps([a.statistics, a.evidence, a.reasons]) == json.dumps(
                [b.statistics, b.evidence, b.reasons]
            )
    assert kept.round == len(rounds) > 6


def test_many_tables_at_once_give_each_tables_likelihood_to_the_last_bit():
    # Small and large supports (past the windowed size too), lone tables, grid subsets.
    rng = np.random.default_rng(11)
    grid = SequentialJudge([SequentialMetric(name="errors")], SETTINGS).params["errors"].log_psi
    tables = []
    while len(tables) < 400:
        n = int(rng.poisson(rng.choice([1, 5, 50, 240, 400, 3000])))
        m = int(rng.poisson(rng.choice([0.3, 4.0, 20.0]) * max(n, 1)))
        p = float(rng.choice([0.001, 0.01, 0.1, 0.5, 0.9, 0.999]))
        table = (int(rng.binomial(n, p)), n, int(rng.binomial(m, p)), m)
        if informative(*table):
            tables.append(table)
    one_by_one = np.array([round_loglik(*t, grid).loglik for t in tables])
    assert np.array_equal(round_logliks(tables, grid), one_by_one)
    assert np.array_equal(round_logliks(tables[:1], grid)[0], one_by_one[0])
    some = round_logliks(tables, grid, slice(41, None))
    assert np.array_equal(some[:, 41:], one_by_one[:, 41:])
    assert np.isnan(some[:, :41]).all()


@pytest.mark.parametrize("explain", [True, False])
def test_a_judge_for_the_rounds_judges_exactly_as_round_by_round(explain):
    # A replay computes every round's likelihoods at once (`for_rounds`): the same
    # states, statistics, evidence and reasons to the last bit, with histograms (bounds
    # fixed at the warm-up), per-pod data, rounds without data and failed queries.
    from dataclasses import replace

    metrics = [
        SequentialMetric(name="errors", kind=MetricKind.COUNTS),
        SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM),
    ]
    judge = SequentialJudge(metrics, AnalysisSettings(max_rounds=8), explain=explain)
    model = replace(
        TrafficModel(rps=60, rounds=14, pod_counts=(3, 5), missing_prob=0.15),
        canary=ArmModel(error_rate=0.004, latency_median_ms=58.0),
    )
    rounds = list(simulate(model, 1, seed=8).round_data(0))
    rounds[5] = replace(rounds[5], error="timeout")
    rounds[7] = replace(rounds[7], canary={}, baseline={})
    rounds[9] = replace(rounds[9], baseline={})
    batched = judge.for_rounds(rounds)
    plain_state = batched_state = judge.initial_state()
    for k, round_data in enumerate(rounds, 1):
        final = k == len(rounds)
        plain_state, plain = judge.update(plain_state, round_data, final=final)
        batched_state, batch = batched.update(batched_state, round_data, final=final)
        assert json.dumps(plain_state.to_json()) == json.dumps(batched_state.to_json())
        for name in ("errors", "latency"):
            a, b = plain.metrics[name], batch.metrics[name]
            assert json.dumps([a.statistics, a.evidence, a.reasons]) == json.dumps(
                [b.statistics, b.evidence, b.reasons]
            )
    assert batched._logliks  # the batch was used


def test_without_explanations_only_the_verdicts_grid_points_are_kept():
    metrics = [SequentialMetric(name="errors")]
    rounds = [counts_round(12, 800, 70, 7000), counts_round(9, 750, 75, 7100)]
    full = SequentialJudge(metrics, SETTINGS).initial_state()
    short = full
    explained = SequentialJudge(metrics, SETTINGS)
    bare = SequentialJudge(metrics, SETTINGS, explain=False)
    for round_data in rounds:
        full, with_reasons = explained.update(full, round_data)
        short, without = bare.update(short, round_data)
    points = explained.params["errors"].verdict_points
    assert loglik_of(short)[points] == loglik_of(full)[points]
    assert all(math.isnan(v) for v in loglik_of(short)[: points.start])
    assert (
        without.metrics["errors"].statistics["e_fail"]
        == (with_reasons.metrics["errors"].statistics["e_fail"])
    )


def test_clear_regression_fails_and_reports_a_time_uniform_interval():
    judge = make_judge("sequential", [SequentialMetric(name="errors")], SETTINGS)
    state, judgement = judge.update(judge.initial_state(), counts_round(300, 10000, 100, 10000))
    # One round cannot show how much the rates vary between rounds: the robust
    # evidence allows for robust_cv (50%) and holds the FAIL back.
    stats = judgement.metrics["errors"].statistics
    assert judgement.verdict is Verdict.RUNNING
    assert stats["e_fail_requests"] > 1e6 and stats["e_fail"] == stats["e_fail_robust"] < 100
    _, judgement = judge.update(state, counts_round(290, 10000, 95, 10000))
    result = judgement.metrics["errors"]
    assert judgement.verdict is Verdict.FAIL and judgement.round == 2
    assert result.verdict is Verdict.FAIL and result.round == 2
    low, high = result.statistics["ci_low"], result.statistics["ci_high"]
    assert 1.0 < low < 3.0 < high  # true odds ratio ~3.06
    assert any("95% time-uniform" in r for r in result.reasons)


def test_equal_rates_pass_after_enough_evidence_and_fail_is_sticky():
    judge = make_judge("sequential", [SequentialMetric(name="errors")], SETTINGS)
    state = judge.initial_state()
    verdicts = []
    for _ in range(10):
        state, judgement = judge.update(state, counts_round(100, 10000, 100, 10000))
        verdicts.append(judgement.verdict)
    assert verdicts[-1] is Verdict.PASS
    assert (
        judgement.metrics["errors"].statistics["ci_low"]
        < 1
        < judgement.metrics["errors"].statistics["ci_high"]
    )
    first_pass = verdicts.index(Verdict.PASS) + 1
    assert judgement.round == first_pass
    # A later regression still fails the metric, within two rounds of its start: FAIL
    # overrides an earlier PASS.
    for _ in range(2):
        state, judgement = judge.update(state, counts_round(400, 10000, 100, 10000))
    assert judgement.verdict is Verdict.FAIL and judgement.round == 12


def test_pass_waits_for_min_requests():
    judge = SequentialJudge([SequentialMetric(name="errors", min_requests=10**6)], SETTINGS)
    state = judge.initial_state()
    for _ in range(10):
        state, judgement = judge.update(state, counts_round(100, 10000, 100, 10000))
    assert judgement.verdict is Verdict.RUNNING
    assert any("min_requests" in r for r in judgement.metrics["errors"].reasons)
    _, judgement = judge.update(state, counts_round(100, 10000, 100, 10000), final=True)
    assert judgement.verdict is Verdict.INCONCLUSIVE and judgement.round == 11


def test_alpha_fail_is_split_across_metrics():
    metrics = [SequentialMetric(name="errors"), SequentialMetric(name="other")]
    judge = SequentialJudge(metrics, SETTINGS)
    _, judgement = judge.update(judge.initial_state(), counts_round(2, 3, 1, 2))
    assert judgement.metrics["errors"].statistics["fail_threshold"] == pytest.approx(200.0)


def test_value_metrics_are_reported_but_not_judged():
    metrics = [SequentialMetric(name="errors"), SequentialMetric(name="cpu", kind=MetricKind.VALUE)]
    judge = SequentialJudge(metrics, SETTINGS)
    data = RoundData(
        canary={"errors": Counts(10000, 300), "cpu": 0.9},
        baseline={"errors": Counts(10000, 100), "cpu": 0.1},
    )
    state, _ = judge.update(judge.initial_state(), data)
    _, judgement = judge.update(state, data)
    assert judgement.verdict is Verdict.FAIL
    assert "not judged" in judgement.metrics["cpu"].reasons[0]
    with pytest.raises(ValueError, match="kind value"):
        SequentialJudge([SequentialMetric(name="cpu", kind=MetricKind.VALUE)], SETTINGS)


def test_invalid_grids_are_rejected_with_the_metric_name():
    with pytest.raises(ValueError, match=r"'errors'.*fail_grid"):
        SequentialJudge([SequentialMetric(name="errors", fail_grid=[0.5])], SETTINGS)
    with pytest.raises(ValueError, match=r"'errors'.*pass_grid"):
        SequentialJudge([SequentialMetric(name="errors", pass_grid=[1.5])], SETTINGS)


# ---------------------------------------------------------------------- histograms


def histogram(counts_per_bucket: list[int]) -> Histogram:
    bounds = (10.0, 50.0, 100.0, 250.0, math.inf)
    return Histogram(bounds, tuple(int(v) for v in np.cumsum(counts_per_bucket)))


def test_bounds_nearest_the_baseline_quantiles():
    # Cumulative fractions 0.2, 0.6, 0.95, 0.995, 1.0 at 10, 50, 100, 250, +Inf.
    h = histogram([400, 800, 700, 90, 10])
    assert choose_bounds(h, (0.5, 0.9, 0.99)) == [50.0, 100.0, 250.0]
    # Duplicates collapse; bounds with everything below are never chosen.
    assert choose_bounds(histogram([0, 0, 0, 100, 0]), (0.5, 0.9)) == []
    assert choose_bounds(histogram([50, 50, 0, 0, 0]), (0.5, 0.9, 0.99)) == [10.0]


def test_histogram_warm_up_then_exceedance_tests_per_bound():
    judge = SequentialJudge([SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM)], SETTINGS)
    base = histogram([400, 800, 700, 90, 10])
    slow = histogram([100, 500, 1000, 300, 100])
    state, judgement = judge.update(
        judge.initial_state(), RoundData(canary={"latency": slow}, baseline={"latency": base})
    )
    entry = state.metrics["latency"]
    assert entry.bounds == (50.0, 100.0, 250.0) and entry.warmup_round == 1
    assert all(t.rounds == 0 for t in entry.tracks)  # warm-up adds no evidence
    assert judgement.verdict is Verdict.RUNNING
    for _ in range(2):
        state, judgement = judge.update(
            state, RoundData(canary={"latency": slow}, baseline={"latency": base})
        )
    result = judgement.metrics["latency"]
    # 20% of the canary slower than 100 ms against 5%: FAIL at the first round after
    # the warm-up, and it stays FAIL while evidence keeps accumulating.
    assert result.verdict is Verdict.FAIL and result.round == 2
    per_bound = result.statistics["per_bound"]
    # Slower than 100 ms: canary 2000 - 1600 = 400 of 2000, baseline 2000 - 1900 = 100,
    # in each of the two rounds after the warm-up.
    assert per_bound[1]["canary"] == {"total": 4000, "failed": 800}
    assert per_bound[1]["baseline"] == {"total": 4000, "failed": 200}
    # FAIL is the mean of the per-bound e-processes.
    assert result.statistics["e_fail"] == pytest.approx(
        np.mean([b["e_fail"] for b in per_bound]), rel=1e-9
    )


def test_histogram_round_without_the_chosen_bound_adds_no_evidence():
    judge = SequentialJudge([SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM)], SETTINGS)
    base = histogram([400, 800, 700, 90, 10])
    state, _ = judge.update(
        judge.initial_state(), RoundData(canary={"latency": base}, baseline={"latency": base})
    )
    other = Histogram((10.0, 75.0, math.inf), (400, 1900, 2000))  # buckets changed
    after, judgement = judge.update(
        state, RoundData(canary={"latency": other}, baseline={"latency": other})
    )
    assert after.metrics["latency"].tracks == state.metrics["latency"].tracks
    assert "missing" in judgement.metrics["latency"].reasons[-1]


def test_histogram_pass_needs_every_bound():
    judge = SequentialJudge([SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM)], SETTINGS)
    base = histogram([4000, 8000, 7000, 900, 100])
    state = judge.initial_state()
    for _ in range(30):
        state, judgement = judge.update(
            state, RoundData(canary={"latency": base}, baseline={"latency": base})
        )
    result = judgement.metrics["latency"]
    assert result.verdict is Verdict.PASS
    assert result.statistics["e_pass"] == pytest.approx(
        min(b["e_pass"] for b in result.statistics["per_bound"])
    )


# ---------------------------------------------------------------------- robustness


def test_robust_evidence_holds_back_bursts_the_baseline_shows_too():
    robust = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    plain = SequentialJudge([SequentialMetric(name="errors", robust=False)], SETTINGS)
    r_state, p_state = robust.initial_state(), plain.initial_state()
    # Both arms' rates jump from round to round (bursts, not a shift), taking turns.
    for k in range(9):
        x, y = (300, 100) if k % 2 == 0 else (100, 300)
        r_state, r = robust.update(r_state, counts_round(x, 10000, y, 10000))
        p_state, p = plain.update(p_state, counts_round(x, 10000, y, 10000))
    assert p.verdict is Verdict.FAIL  # the request-level test believes the bursts
    stats = r.metrics["errors"].statistics
    assert r.verdict is not Verdict.FAIL
    assert stats["round_cv"] > 0.3  # the baseline's own rounds show the spread
    assert stats["e_fail"] == stats["e_fail_robust"] < 100 < stats["e_fail_requests"]
    assert any("FAIL needs both" in reason for reason in r.metrics["errors"].reasons)


def test_request_level_start_time_mixture_has_expectation_sum_of_weights():
    """E[sum_s w_s prod_{k>=s} LR_k] = sum_s w_s under the null, exactly (two rounds)."""
    judge = SequentialJudge(
        [SequentialMetric(name="errors", robust=False, fail_grid=[2.0, 5.0])], SETTINGS
    )
    params = judge.params["errors"]
    tables = [(4, 3, 5), (3, 6, 4)]  # (n, m, e) margins of rounds 1 and 2
    total = 0.0
    for x1 in range(max(0, tables[0][2] - tables[0][1]), min(tables[0][0], tables[0][2]) + 1):
        for x2 in range(max(0, tables[1][2] - tables[1][1]), min(tables[1][0], tables[1][2]) + 1):
            p = 1.0
            state = judge.initial_state()
            for (n, m, e), x in zip(tables, (x1, x2), strict=True):
                # P(x | margins; psi = 1) = C(n, x) C(m, e - x) / C(n + m, e)
                p *= math.comb(n, x) * math.comb(m, e - x) / math.comb(n + m, e)
                state, judgement = judge.update(state, counts_round(x, n, e - x, m))
            total += p * judgement.metrics["errors"].statistics["e_fail"]
    assert params.tolerance == 1.0
    assert total == pytest.approx(1 / 2 + 1 / 6, rel=1e-10)


@pytest.mark.parametrize("delta", [0.25, 1.0, 3.0, 10.0, 100.0])
def test_robust_round_factor_has_expectation_at_most_one_under_its_null(delta):
    """A round score z ~ N(0, 1) (the null, correct scale): E[t-ratio] <= 1 (quadrature)."""
    from canary.judge.robust import round_log_ratios

    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    values = [math.exp(round_log_ratios(z, delta, np.array([1.0]))[0]) for z in nodes]
    assert float(np.dot(weights, values)) / math.sqrt(2 * math.pi) <= 1.0
    # A worse null (mean below 0) gives less.
    shifted = [math.exp(round_log_ratios(z - 1, delta, np.array([1.0]))[0]) for z in nodes]
    assert float(np.dot(weights, shifted)) <= float(np.dot(weights, values)) + 1e-6


def test_robust_score_is_monotone_in_the_canary_failures():
    from canary.judge.robust import round_contrast, round_log_ratios

    etas = np.array([0.25, 1.0, 9.0, 1000.0])
    previous = None
    for x in range(0, 1001, 25):
        z, d = round_contrast(x, 1000, 10, 1000, 1.0, 0.5, 0.01)
        logs = round_log_ratios(z, d, etas)
        if previous is not None:
            assert (logs >= previous - 1e-12).all()
        previous = logs


def test_robust_process_false_fail_rate_under_round_heterogeneity():
    """Rates drawn per arm and round (Beta, CV 99%): the robust e-process stays valid."""
    rng = np.random.default_rng(17)
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS, explain=False)
    plain = SequentialJudge(
        [SequentialMetric(name="errors", robust=False)], SETTINGS, explain=False
    )
    mean, cv, reps = 0.01, 0.99, 150
    strength = (1 - mean) / (mean * cv * cv) - 1
    robust_fails = plain_fails = 0
    for _ in range(reps):
        state, p_state = judge.initial_state(), plain.initial_state()
        failed = p_failed = False
        for _ in range(30):
            pc, pb = rng.beta(mean * strength, (1 - mean) * strength, 2)
            x, y = int(rng.binomial(600, pc)), int(rng.binomial(5400, pb))
            state, j = judge.update(state, counts_round(x, 600, y, 5400))
            p_state, pj = plain.update(p_state, counts_round(x, 600, y, 5400))
            failed |= j.verdict is Verdict.FAIL
            p_failed |= pj.verdict is Verdict.FAIL
        robust_fails += failed
        plain_fails += p_failed
    # Independent-request evidence is fooled; the robust one mostly not (the benchmark
    # measures the rate over 60 rounds with more replications).
    assert plain_fails >= 0.3 * reps
    assert robust_fails <= 0.1 * reps


@pytest.mark.parametrize("baseline_failed", [10, 100])
def test_severity_is_monotone(baseline_failed):
    """More canary failures never mean less evidence or a later FAIL."""
    metrics = [SequentialMetric(name="errors")]
    e_values, fail_rounds = [], []
    for canary_failed in (20, 50, 100, 200, 500, 1000, 5000, 10000):
        judge = SequentialJudge(metrics, SETTINGS, explain=False)
        state = judge.initial_state()
        fail_round = None
        for k in range(1, 16):
            state, j = judge.update(
                state, counts_round(canary_failed, 10000, baseline_failed + k % 3, 10000)
            )
            if k == 1:
                e_values.append(j.metrics["errors"].statistics["e_fail"])
            if j.verdict is Verdict.FAIL and fail_round is None:
                fail_round = k
        fail_rounds.append(fail_round or 99)
    assert e_values == sorted(e_values)
    assert fail_rounds == sorted(fail_rounds, reverse=True)
    assert fail_rounds[-1] == 1  # every request failed: the first round fails


def test_a_dead_canary_fails_at_its_first_round_with_requests():
    judge = make_judge("sequential", [SequentialMetric(name="errors")], SETTINGS)
    state, j = judge.update(judge.initial_state(), counts_round(0, 0, 50, 5000))
    assert j.verdict is Verdict.RUNNING
    _, j = judge.update(state, counts_round(12, 12, 48, 5000))
    assert j.verdict is Verdict.FAIL and j.round == 2


def test_a_regression_after_a_clean_period_fails_within_two_rounds():
    rng = np.random.default_rng(8)
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    state = judge.initial_state()
    for k in range(1, 31):
        rate = 0.01 if k <= 10 else 0.04
        x, y = int(rng.binomial(5000, rate)), int(rng.binomial(5000, 0.01))
        state, j = judge.update(state, counts_round(x, 5000, y, 5000))
        if j.verdict is Verdict.FAIL:
            break
    assert j.verdict is Verdict.FAIL and j.round in (11, 12)


def test_a_severe_regression_fails_even_when_the_baseline_pods_differ_a_lot():
    """Baseline pods at 20% and 0% errors, the canary at 50%: FAIL within a few rounds."""
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    state = judge.initial_state()
    for _ in range(5):
        data = RoundData(
            canary={"errors": Counts(200, 100)},
            baseline={"errors": Counts(200, 20)},
            pods={
                "canary": {"errors": {"c0": Counts(100, 100), "c1": Counts(100, 0)}},
                "baseline": {"errors": {"b0": Counts(100, 20), "b1": Counts(100, 0)}},
            },
        )
        state, j = judge.update(state, data)
        if j.verdict is Verdict.FAIL:
            break
    assert j.verdict is Verdict.FAIL and j.round <= 3


def test_pods_the_baseline_shows_to_differ_hold_the_fail_back():
    """A canary on one bad pod among baseline pods that differ as much: no FAIL."""

    def pod_round(canary_pods, baseline_pods):
        c = Counts(sum(t for t, _ in canary_pods), sum(f for _, f in canary_pods))
        b = Counts(sum(t for t, _ in baseline_pods), sum(f for _, f in baseline_pods))
        return RoundData(
            canary={"errors": c},
            baseline={"errors": b},
            pods={
                "canary": {"errors": {f"c{i}": Counts(*p) for i, p in enumerate(canary_pods)}},
                "baseline": {"errors": {f"b{i}": Counts(*p) for i, p in enumerate(baseline_pods)}},
            },
        )

    baseline = [(1000, 10)] * 7 + [(1000, 30)] * 3  # three of ten baseline pods at 3%
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    plain = SequentialJudge([SequentialMetric(name="errors", robust=False)], SETTINGS)
    state, p_state = judge.initial_state(), plain.initial_state()
    for _ in range(20):
        state, j = judge.update(state, pod_round([(500, 15)], baseline))
        p_state, p = plain.update(p_state, pod_round([(500, 15)], baseline))
    assert p.verdict is Verdict.FAIL
    assert j.verdict is Verdict.RUNNING
    assert j.metrics["errors"].statistics["pod_cv"] > 0.3
    assert any("single canary pod" in r for r in j.metrics["errors"].reasons)


def pods_round(canary_pods, baseline_pods) -> RoundData:
    """A round from (requests, failures) per pod; each arm's entry is the pods' sum."""
    c = Counts(sum(t for t, _ in canary_pods), sum(f for _, f in canary_pods))
    b = Counts(sum(t for t, _ in baseline_pods), sum(f for _, f in baseline_pods))
    return RoundData(
        canary={"errors": c},
        baseline={"errors": b},
        pods={
            "canary": {"errors": {f"c{i}": Counts(*p) for i, p in enumerate(canary_pods)}},
            "baseline": {"errors": {f"b{i}": Counts(*p) for i, p in enumerate(baseline_pods)}},
        },
    )


def test_the_pod_spread_of_identical_pods_falls_as_requests_accumulate():
    """A/A: the baseline's pods differ only binomially; pooled over rounds, the bound
    on their spread falls (it must not stay at the level of one round's noise), while
    pods that do differ keep it up."""
    from canary.judge.robust import BaselineSpread

    rng = np.random.default_rng(3)
    same, differ = BaselineSpread(), BaselineSpread()
    bounds = []
    for _ in range(40):
        pods = {f"b{i}": (int(rng.binomial(500, 0.01)), 500) for i in range(10)}
        same.add(sum(y for y, _ in pods.values()), 5000, pods)
        bad = {**pods, "b0": (int(rng.binomial(500, 0.03)), 500)}
        differ.add(sum(y for y, _ in bad.values()), 5000, bad)
        bounds.append(math.sqrt(same.rho2()))
    assert bounds[-1] < bounds[4] / 2 and bounds[-1] < 0.15
    assert math.sqrt(differ.rho2()) > 0.4  # one pod at 3x: relative spread ~0.6
    assert same.pod_count == 10


def old_pod_spread_state(rounds: list[dict[str, tuple[int, int]]]) -> dict:
    """A baseline spread as stored before pods were kept by name: per-round sums of the
    pods' Pearson statistic, degrees of freedom and effective size, and the most pods."""
    state = {"rounds": 0, "s_m": 0.0, "s_m2": 0.0, "s_y": 0.0, "s_yy": 0.0}
    state |= {"pod_ss": 0.0, "pod_df": 0, "pod_neff": 0.0, "pod_max": 0}
    for pods in rounds:
        y, m = sum(v[0] for v in pods.values()), sum(v[1] for v in pods.values())
        state["rounds"] += 1
        state["s_m"] += m
        state["s_m2"] += m * m
        state["s_y"] += y
        state["s_yy"] += y * y / m
        state["pod_ss"] += sum(yi * yi / mi for yi, mi in pods.values()) - y * y / m
        state["pod_df"] += len(pods) - 1
        state["pod_neff"] += m - sum(mi * mi for _, mi in pods.values()) / m
        state["pod_max"] = max(state["pod_max"], len(pods))
    return state


def test_an_analysis_running_across_the_upgrade_keeps_its_recorded_pod_spread():
    """A state stored before pods were kept by name carries its pod spread as sums; the
    spread it shows is still allowed for, and not forgotten when new rounds come."""
    from canary.judge.robust import BaselineSpread

    rng = np.random.default_rng(4)
    rounds = []
    for _ in range(10):  # one of 10 baseline pods at 3%, the others at 1%
        rates = [0.03] + [0.01] * 9
        rounds.append({f"b{i}": (int(rng.binomial(500, r)), 500) for i, r in enumerate(rates)})
    stored = old_pod_spread_state(rounds)
    spread = BaselineSpread(stored)
    assert spread.pod_count == 10
    recorded = spread.rho2(0.5)
    assert math.sqrt(recorded) > 0.3  # the bad pod shows, as in a fresh analysis
    fresh = BaselineSpread()
    for pods in rounds:
        fresh.add(sum(y for y, _ in pods.values()), 5000, pods)
    assert math.sqrt(fresh.rho2(0.5)) > 0.3
    # A round of identical pods after the upgrade: the recorded spread still counts,
    # and the stored sums go on being stored.
    same = {f"b{i}": (5, 500) for i in range(10)}
    spread.add(50, 5000, same)
    assert spread.rho2(0.5) >= recorded * 0.9
    again = BaselineSpread(spread.to_json())
    assert again.rho2(0.5) == spread.rho2(0.5)
    assert "pod_ss" not in BaselineSpread().to_json()  # new analyses: pods by name only


def test_round_spread_is_the_prior_at_first_then_whatever_the_baseline_shows():
    from canary.judge.robust import BaselineSpread

    spread = BaselineSpread()
    spread.add(50, 5000)
    assert spread.kappa2(0.5) == pytest.approx(0.25)  # one round: the prior robust_cv
    # The baseline's rate swinging 0.2% / 5% between rounds: far beyond the prior, and
    # the bound follows it (a cap would under-cover such variation).
    for y in (10, 250, 10, 250, 10, 250):
        spread.add(y, 5000)
    assert math.sqrt(spread.kappa2(0.5)) > 1.0
    steady = BaselineSpread()
    rng = np.random.default_rng(2)
    for _ in range(30):
        steady.add(int(rng.binomial(5000, 0.01)), 5000)
    assert math.sqrt(steady.kappa2(0.5)) < 0.15  # steady rates: the bound falls


def test_the_prior_spread_counts_as_one_round_so_the_second_round_adds_evidence():
    """Baseline 10 then 12 failures of 1,000 (binomial noise), canary 45 of 1,000 twice:
    two rounds bound the spread between rounds by what they show together with the
    prior, not by a one-degree-of-freedom bound far above the prior, and a 5x error
    rate fails at the second round."""
    from canary.judge.robust import BaselineSpread

    spread = BaselineSpread()
    spread.add(10, 1000)
    spread.add(12, 1000)
    assert 0.0 < spread.kappa2(0.5) < 0.25  # below the prior robust_cv = 0.5
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS, explain=False)
    state, first = judge.update(judge.initial_state(), counts_round(45, 1000, 10, 1000))
    _, second = judge.update(state, counts_round(45, 1000, 12, 1000))
    assert first.verdict is Verdict.RUNNING
    assert second.verdict is Verdict.FAIL and second.round == 2


def test_a_small_regression_with_pods_fails_as_fast_as_without():
    """1% -> 2% on all of 3 canary pods against 10 baseline pods: the pods change the
    FAIL round by at most one (their spread, pooled, is not mistaken for a pod effect)."""
    rng = np.random.default_rng(5)
    with_pods = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    without = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    s1, s2 = with_pods.initial_state(), without.initial_state()
    rounds = {}
    for k in range(1, 61):
        canary = [(200, int(rng.binomial(200, 0.02))) for _ in range(3)]
        baseline = [(540, int(rng.binomial(540, 0.01))) for _ in range(10)]
        data = pods_round(canary, baseline)
        s1, j1 = with_pods.update(s1, data)
        s2, j2 = without.update(s2, RoundData(canary=data.canary, baseline=data.baseline))
        for name, j in (("pods", j1), ("plain", j2)):
            if j.verdict is Verdict.FAIL:
                rounds.setdefault(name, k)
        if len(rounds) == 2:
            break
    assert set(rounds) == {"pods", "plain"}
    assert rounds["pods"] <= rounds["plain"] + 1


def test_an_outlying_canary_pod_is_held_to_what_the_others_predict():
    from canary.judge.robust import without_worst_pod

    # One bursting pod of four: its excess over mu + 3 sqrt(mu) + 3 is left out.
    x, n = without_worst_pod(66, 800, [(60, 200), (2, 200), (2, 200), (2, 200)])
    mu = 200 * 6 / 600
    assert n == 800 and x == pytest.approx(6 + mu + 3 * math.sqrt(mu) + 3)
    # Every pod regressed alike: nothing stands out, nothing is lost.
    assert without_worst_pod(24, 800, [(7, 200), (5, 200), (6, 200), (6, 200)]) == (24.0, 800)
    # Fewer than three canary pods: a bad pod cannot be told from a bad version.
    assert without_worst_pod(62, 400, [(60, 200), (2, 200)]) == (62.0, 400)
    # Monotone: one more failure in any pod never lowers the result.
    rng = np.random.default_rng(11)
    for _ in range(300):
        pods = [(int(f), 200) for f in rng.integers(0, 60, size=4)]
        base, _ = without_worst_pod(sum(f for f, _ in pods), 800, pods)
        for i in range(4):
            more = [(f + (j == i), t) for j, (f, t) in enumerate(pods)]
            assert without_worst_pod(sum(f for f, _ in more), 800, more)[0] >= base - 1e-9


def test_holding_back_a_pod_is_monotone_when_pods_differ_in_size():
    from canary.judge.robust import without_worst_pod

    def held(pods: list[tuple[int, int]]) -> float:
        return without_worst_pod(sum(f for f, _ in pods), sum(t for _, t in pods), pods)[0]

    # One more failure in the third pod makes it the highest-rate pod: the result must
    # not fall (holding back only the highest-rate pod gave 31.80, then 31.12).
    assert held([(15, 62), (2, 183), (17, 67)]) >= held([(15, 62), (2, 183), (16, 67)])
    rng = np.random.default_rng(12)
    for _ in range(3000):
        size = int(rng.integers(3, 6))
        requests = rng.integers(1, 300, size=size)
        pods = [(int(rng.integers(0, t + 1)), int(t)) for t in requests]
        base = held(pods)
        for i in range(size):
            if pods[i][0] < pods[i][1]:
                more = [(f + (j == i), t) for j, (f, t) in enumerate(pods)]
                assert held(more) >= base - 1e-9, (pods, i)


# ---------------------------------------------------------------------- combination


def result(name: str, verdict: Verdict, at: int | None) -> MetricResult:
    return MetricResult(name=name, verdict=verdict, round=at)


def test_combine_fail_wins_and_pass_needs_every_metric():
    fail = combine(
        {"a": result("a", Verdict.PASS, 2), "b": result("b", Verdict.FAIL, 5)}, final=False, round=5
    )
    assert fail.verdict is Verdict.FAIL and fail.round == 5
    passed = combine(
        {"a": result("a", Verdict.PASS, 2), "b": result("b", Verdict.PASS, 4)}, final=False, round=6
    )
    assert passed.verdict is Verdict.PASS and passed.round == 4
    running = combine(
        {"a": result("a", Verdict.PASS, 2), "b": result("b", Verdict.RUNNING, None)},
        final=False,
        round=6,
    )
    assert running.verdict is Verdict.RUNNING and running.round is None
    budget = combine(
        {"a": result("a", Verdict.PASS, 2), "b": result("b", Verdict.INCONCLUSIVE, 9)},
        final=True,
        round=9,
    )
    assert budget.verdict is Verdict.INCONCLUSIVE and budget.round == 9
    ignored = combine(
        {"a": result("a", Verdict.PASS, 2), "cpu": result("cpu", Verdict.INCONCLUSIVE, None)},
        final=False,
        round=3,
        ignored=["cpu"],
    )
    assert ignored.verdict is Verdict.PASS


# ---------------------------------------------------------------------- simulated traffic


def test_simulated_rounds_judge_end_to_end():
    model = TrafficModel(
        rounds=20, baseline=ArmModel(error_rate=0.01), canary=ArmModel(error_rate=0.04)
    )
    sim = simulate(model, 1, seed=11)
    assert sim.canary_buckets.shape == (1, 20, len(ENVOY_BUCKETS))
    metrics = [
        SequentialMetric(name="errors"),
        SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM),
    ]
    judgements = judge_rounds(make_judge("sequential", metrics, SETTINGS), list(sim.round_data(0)))
    assert judgements[-1].verdict is Verdict.FAIL
    assert judgements[-1].metrics["errors"].verdict is Verdict.FAIL


def test_a_state_stored_before_the_restarting_mixtures_still_loads_and_continues():
    judge = SequentialJudge([SequentialMetric(name="errors")], SETTINGS)
    state, _ = judge.update(judge.initial_state(), counts_round(10, 1000, 90, 9000))
    old = json.loads(json.dumps(state.to_json()))
    for track in old["metrics"]["errors"]["tracks"]:
        for key in ("late", "starts", "spread", "canary_pods"):
            del track[key]
        track["dispersion"] = [0.0] * 41  # the old over-dispersion guard's sums
    state, judgement = judge.update(judge.read_state(old), counts_round(40, 1000, 90, 9000))
    track = state.metrics["errors"].tracks[0]
    assert track.rounds == 2 and track.starts is not None and len(track.starts.log_w) == 1
    assert judgement.metrics["errors"].statistics["e_fail_requests"] > 1.0


def test_identical_latency_in_envoy_buckets_passes_and_a_thin_bound_is_fail_only():
    """Median 30 ms, sigma 0.6, ~3000 requests per arm: the bound nearest p99 is 250 ms,
    which almost no request exceeds; it counts for FAIL only and the canary passes."""
    same = ArmModel(error_rate=0.001, latency_median_ms=30.0, latency_sigma=0.6)
    model = TrafficModel(rps=100.0, canary_weight=0.5, baseline=same, canary=same)
    sim = simulate(model, 1, seed=4)
    # The warm-up round: the expected bucket counts of 3000 requests, one above 250 ms.
    from canary.metrics.simulated_traffic import bucket_probabilities

    cumulative = np.cumsum(np.round(bucket_probabilities(same) * 3000)).astype(int)
    cumulative[ENVOY_BUCKETS.index(250) :] = cumulative[-1]
    cumulative[ENVOY_BUCKETS.index(250)] -= 1
    warm = Histogram(ENVOY_BUCKETS, tuple(int(c) for c in cumulative))
    rounds = [RoundData(canary={"latency": warm}, baseline={"latency": warm})]
    rounds += list(sim.round_data(0))
    metric = SequentialMetric(name="latency", kind=MetricKind.HISTOGRAM)
    judgements = judge_rounds(make_judge("sequential", [metric], SETTINGS), rounds)
    result = judgements[-1].metrics["latency"]
    assert 250.0 in result.statistics["bounds"]
    assert 250.0 not in result.statistics["pass_bounds"]
    assert result.verdict is Verdict.PASS
    assert any("FAIL only" in reason and "250 ms" in reason for reason in result.reasons)
