"""The Kayenta-compatible `mann_whitney` judge.

Reference numbers come from Kayenta's published suites (vectors in tests/kayenta_vectors.py,
files cited there) and from R 4.2.2 ``wilcox.test(x, y, conf.int=TRUE, exact=FALSE,
correct=TRUE)``; p-values are cross-checked against scipy.stats.mannwhitneyu.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from kayenta_vectors import (
    CLES_HIGH_CONTROL,
    CLES_HIGH_EXPERIMENT,
    CLES_LOW_CONTROL,
    CLES_LOW_EXPERIMENT,
    CLES_PASS_CONTROL,
    CLES_PASS_EXPERIMENT,
    HIGH_EXPERIMENT,
    LARGE_CONTROL,
    LARGE_EXPERIMENT,
    LOW_CONTROL,
    NIST_IQR,
    PASS_CONTROL,
    PASS_EXPERIMENT,
    R_TIE_CONTROL,
    R_TIE_EXPERIMENT,
    R_TIE_LARGE_CONTROL,
    R_TIE_LARGE_EXPERIMENT,
)
from scipy.stats import mannwhitneyu, norm, rankdata

from canary.config import AnalysisSettings, MannWhitneyMetric
from canary.judge import judge_rounds, make_judge
from canary.judge.kayenta import (
    Classification,
    EffectSizeSettings,
    classify,
    cles,
    effect_size_settings,
    mean_ratio,
    outlier_mask,
    prepare,
)
from canary.judge.kayenta_score import ScoredMetric, score
from canary.judge.mann_whitney import MannWhitneyJudge, min_samples_for
from canary.judge.mannwhitney_ci import rank_sum_z, shift_interval, zeroin
from canary.judge.round_values import bucket_mean, bucket_quantile
from canary.model import Counts, Histogram, RoundData, Verdict

C = Classification

# --------------------------------------------------------------------------- the interval


def test_kayenta_mannwhitney_suite_small_example() -> None:
    # MannWhitneySuite "returns expected values": interval [6, 39], estimate 22.5 at 0.95.
    result = shift_interval([10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0], 0.95)
    assert result.lower == pytest.approx(6.0, abs=1e-6)
    assert result.upper == pytest.approx(39.0, abs=1e-6)
    assert result.estimate == pytest.approx(22.5, abs=1e-6)
    # Kayenta's older suite printed 0.0285714 = 2/70, the *exact* p-value; the normal
    # approximation (exact=FALSE, correct=TRUE) gives R's and scipy's asymptotic value.
    assert result.p_value == pytest.approx(0.030382821976577493, rel=1e-12)
    exact = mannwhitneyu([10, 20, 30, 40], [1, 2, 3, 4], method="exact").pvalue
    assert exact == pytest.approx(0.02857142857142857)


@pytest.mark.parametrize(
    ("experiment", "control", "confidence", "expected"),
    [
        # MannWhitneySuite "Tie out with R Version" (values Kayenta took from R).
        (
            R_TIE_EXPERIMENT,
            R_TIE_CONTROL,
            0.95,
            (-0.500002521696696, -3.486287505871302e-5, -0.4999393907180323),
        ),
        # MannWhitneySuite "Tie out with R Version (Large)".
        (
            R_TIE_LARGE_EXPERIMENT,
            R_TIE_LARGE_CONTROL,
            0.98,
            (-0.4999173250549087, -6.912685789769486e-6, -3.45044082729315e-5),
        ),
    ],
)
def test_interval_ties_out_with_r_as_in_kayenta(experiment, control, confidence, expected) -> None:
    result = shift_interval(experiment, control, confidence)
    # Kayenta asserts 1e-6 on the bounds and 1e-4 on the estimate; we match R closer.
    assert result.lower == pytest.approx(expected[0], abs=1e-9)
    assert result.upper == pytest.approx(expected[1], abs=1e-9)
    assert result.estimate == pytest.approx(expected[2], abs=1e-9)


@pytest.mark.parametrize(
    ("x", "y", "confidence", "expected"),
    [
        # Computed with R 4.2.2: wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE,
        # conf.level=confidence) -> conf.int[1], conf.int[2], estimate, p.value.
        (
            [1, 2, 2, 3, 5, 8],
            [0, 1, 1, 2, 4],
            0.98,
            (-2.000037709755468, 7.0000431199262483, 1.0000473796386395, 0.16304505585423726),
        ),
        (
            [0.5, 0.7, 0.9, 1.1, 3.0],
            [0.4, 0.6, 0.6, 0.8, 0.9, 1.0, 1.2],
            0.95,
            (-0.30003692520067227, 2.0999957768947688, 0.10004515063862794, 0.56840883532299125),
        ),
        (
            [1.0, 1.0, 2.0, 4.0, 1.0, 0.0, 1.0],
            [3.0, 3.0, 5.0, 1.0],
            0.9,
            (-3.0000208132436441, 6.4489149572593364e-05, -1.9999858124595971, 0.13615137140989925),
        ),
        (
            [120, 135, 150, 151, 160, 171, 190, 240],
            [100, 110, 111, 125, 130, 140, 150, 150, 155],
            0.98,
            (-4.0000249462019255, 79.000043563209076, 29.473684210526315, 0.029977341949243935),
        ),
    ],
)
def test_interval_matches_r_wilcox_test(x, y, confidence, expected) -> None:
    result = shift_interval(x, y, confidence)
    got = (result.lower, result.upper, result.estimate, result.p_value)
    assert got == pytest.approx(expected, abs=1e-12)


def test_intermediate_values_of_kayenta_suite() -> None:
    # MannWhitneySuite "Intermediate Values / Variables" at 0.95 (zero-heavy data).
    x, y = np.array(LARGE_EXPERIMENT), np.array(LARGE_CONTROL)
    mumin, mumax = x.min() - y.max(), x.max() - y.min()
    assert mumin == pytest.approx(-3.124999999999986, abs=1e-12)
    assert mumax == pytest.approx(5.555555555555557, abs=1e-12)
    z = norm.isf(0.025)
    assert rank_sum_z(x, y, mumin) - z == pytest.approx(17.090968923762254, abs=1e-9)
    assert rank_sum_z(x, y, mumax) - z == pytest.approx(-20.997687930433106, abs=1e-9)
    assert rank_sum_z(x, y, mumin) + z == pytest.approx(21.01089689284236, abs=1e-9)
    assert rank_sum_z(x, y, mumax) + z == pytest.approx(-17.077759961353, abs=1e-9)
    result = shift_interval(x, y, 0.95)
    assert result.lower == pytest.approx(3.521755377702165e-5, abs=1e-12)
    assert result.upper == pytest.approx(2.02456461662334e-5, abs=1e-12)
    # R computes the estimate without the continuity correction (R 4.2.2 gives
    # 1.515181852089427e-05); Kayenta keeps the correction and gets 2.6279243045155653e-5.
    assert result.estimate == pytest.approx(1.515181852089427e-05, abs=1e-12)

    def corrected(d: float) -> float:
        return rank_sum_z(x, y, d, correct=True)

    kayenta_estimate = zeroin(corrected, mumin, mumax, corrected(mumin), corrected(mumax))
    assert kayenta_estimate == pytest.approx(2.6279243045155653e-5, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_p_value_and_u_agree_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(10, 3, rng.integers(3, 40)))  # rounding makes ties
    y = np.round(rng.normal(11, 3, rng.integers(3, 40)))
    result = shift_interval(x, y, 0.95)
    reference = mannwhitneyu(x, y, method="asymptotic", use_continuity=True)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    assert result.u_statistic == reference.statistic


@pytest.mark.parametrize("seed", range(4))
def test_interval_bounds_are_where_the_test_starts_rejecting(seed: int) -> None:
    # Inverting the test: shifting x by a value just outside [l, u] makes scipy's test
    # reject at alpha; just inside it does not.
    rng = np.random.default_rng(100 + seed)
    x, y = rng.normal(1000, 200, 25), rng.normal(1100, 200, 30)
    alpha = 0.05
    result = shift_interval(x, y, 1 - alpha)

    def p(shift: float) -> float:
        return mannwhitneyu(x - shift, y, method="asymptotic", use_continuity=True).pvalue

    delta = 0.01
    assert p(result.lower - delta) < alpha < p(result.lower + delta)
    assert p(result.upper + delta) < alpha < p(result.upper - delta)
    assert result.lower < result.estimate < result.upper


def _ranked_w(x: np.ndarray, y: np.ndarray, d: float, correct: bool) -> float:
    """W(d) computed literally as R does: rank c(x - d, y), count ties."""
    ranks = rankdata(np.concatenate((x - d, y)))
    n, m = len(x), len(y)
    dz = ranks[:n].sum() - n * (n + 1) / 2 - n * m / 2
    _, t = np.unique(ranks, return_counts=True)
    sigma = math.sqrt(n * m / 12 * ((n + m + 1) - np.sum(t**3.0 - t) / ((n + m) * (n + m - 1))))
    return (dz - (math.copysign(0.5, dz) if correct and dz else 0.0)) / sigma


@pytest.mark.parametrize("seed", range(5))
def test_rank_free_statistic_equals_the_ranked_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, rng.integers(2, 30)).astype(float) / 2
    y = rng.integers(0, 6, rng.integers(2, 30)).astype(float) / 2
    # Shifts at pairwise differences create ties between x - d and y.
    shifts = [*np.subtract.outer(x, y).ravel()[:40], 0.123, -1.7]
    for d in shifts:
        for correct in (True, False):
            assert rank_sum_z(x, y, d, correct=correct) == pytest.approx(
                _ranked_w(x, y, d, correct), abs=1e-12
            )
    # Distinct x values that rounding merges after the shift.
    x, y = np.array([1.0, 1.0 + 2.0**-52, 3.0]), np.array([0.5, 2.0])
    assert rank_sum_z(x, y, 1e17) == pytest.approx(_ranked_w(x, y, 1e17, True), abs=1e-12)


def test_zeroin_finds_roots_and_respects_zero_endpoints() -> None:
    root = zeroin(lambda v: v * v - 2.0, 0.0, 2.0, -2.0, 2.0, tol=1e-10)
    assert root == pytest.approx(math.sqrt(2.0), abs=1e-9)
    assert zeroin(lambda v: v, 0.0, 1.0, 0.0, 1.0) == 0.0


def test_interval_refuses_unusable_samples() -> None:
    with pytest.raises(ValueError, match="all observations are tied"):
        shift_interval([1.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least one value"):
        shift_interval([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        shift_interval([1.0, math.nan], [1.0, 2.0])


def test_achievability_matches_min_samples() -> None:
    # Below min_samples_for(c) values per arm, even complete separation cannot reach c:
    # R returns the end of the data range and warns.
    assert min_samples_for(0.98) == 5
    assert min_samples_for(0.95) == 4
    four = shift_interval([10.0, 11, 12, 13], [1.0, 2, 3, 4], 0.98)
    assert not four.lower_achieved and four.lower == 6.0
    five = shift_interval([10.0, 11, 12, 13, 14], [1.0, 2, 3, 4, 5], 0.98)
    assert five.lower_achieved and five.upper_achieved


# --------------------------------------------------------------------------- ClassifierSuite

HIGH_SMALL = ([1.0, 2.2, 1.1, 2.5, 3.0], [20.0, 22.0, 21.0, 25.0, 30.0])  # (control, experiment)


@pytest.mark.parametrize(
    ("control", "experiment", "kwargs", "label", "critical"),
    [
        (PASS_CONTROL, PASS_EXPERIMENT, {}, C.PASS, False),
        (PASS_CONTROL, HIGH_EXPERIMENT, {}, C.HIGH, False),
        (LOW_CONTROL, PASS_EXPERIMENT, {}, C.LOW, False),
        (LOW_CONTROL, PASS_EXPERIMENT, {"direction": "increase"}, C.PASS, False),
        (PASS_CONTROL, HIGH_EXPERIMENT, {"direction": "decrease"}, C.PASS, False),
        (PASS_CONTROL, HIGH_EXPERIMENT, {"direction": "increase"}, C.HIGH, False),
        (LOW_CONTROL, PASS_EXPERIMENT, {"direction": "decrease"}, C.LOW, False),
        (LARGE_CONTROL, LARGE_EXPERIMENT, {}, C.HIGH, False),
        (*HIGH_SMALL, {"effect": EffectSizeSettings(allowed_decrease=0.8, allowed_increase=1.2)},
         C.HIGH, False),
        (LOW_CONTROL, PASS_EXPERIMENT,
         {"direction": "decrease",
          "effect": EffectSizeSettings(allowed_decrease=0.8, allowed_increase=1.2)}, C.LOW, False),
        ([20.0, 22.0, 21.0, 25.0, 30.0], [10.0, 12.2, 10.1, 12.5, 23.0],
         {"effect": EffectSizeSettings(allowed_decrease=0.5, allowed_increase=1.0)}, C.PASS, False),
        (LARGE_CONTROL, LARGE_EXPERIMENT,
         {"effect": EffectSizeSettings(allowed_decrease=1.0, allowed_increase=5.0)}, C.PASS, False),
        (CLES_PASS_CONTROL, CLES_PASS_EXPERIMENT,
         {"tolerance": 0.2, "confidence": 0.98,
          "effect": EffectSizeSettings("cles", allowed_decrease=0.5, allowed_increase=0.8)},
         C.PASS, False),
        (CLES_HIGH_CONTROL, CLES_HIGH_EXPERIMENT,
         {"tolerance": 0.2, "confidence": 0.98,
          "effect": EffectSizeSettings("cles", allowed_decrease=0.2, allowed_increase=0.8)},
         C.HIGH, False),
        (CLES_LOW_CONTROL, CLES_LOW_EXPERIMENT,
         {"tolerance": 0.2, "confidence": 0.98,
          "effect": EffectSizeSettings("cles", allowed_decrease=0.2, allowed_increase=0.8)},
         C.LOW, False),
        (*HIGH_SMALL,
         {"critical": True, "effect": EffectSizeSettings(critical_decrease=1.0,
                                                         critical_increase=1.2)}, C.HIGH, True),
        ([10.0, 20.2, 10.1, 20.5, 30.0], [2.0, 2.0, 2.0, 2.0, 3.0],
         {"critical": True, "effect": EffectSizeSettings(critical_decrease=1.2,
                                                         critical_increase=1.0)}, C.LOW, True),
        (*HIGH_SMALL,
         {"critical": True, "effect": EffectSizeSettings(
             allowed_decrease=1.0, allowed_increase=5.0, critical_decrease=1.0,
             critical_increase=13.0)}, C.HIGH, False),
        (*HIGH_SMALL,
         {"critical": True, "effect": EffectSizeSettings(
             allowed_decrease=1.0, allowed_increase=13.0, critical_decrease=1.0,
             critical_increase=15.0)}, C.PASS, False),
        (*HIGH_SMALL, {"critical": True}, C.HIGH, True),
        ([1.0, 1.0], [1.0, 1.0, 1.0], {"direction": "decrease"}, C.PASS, False),
        ([5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0], {}, C.PASS, False),
        ([1.0] * 5, [0.0, 1.0, 1.0, 1.0, 1.0], {"direction": "decrease"}, C.PASS, False),
        ([1.0] * 5, [1.0, 1.0, 1.0, 1.0, 10.0], {}, C.PASS, False),
        ([1.0] * 5, [10.0] * 5, {}, C.HIGH, False),
        ([0.0] * 5, [10.0] * 5, {}, C.HIGH, False),
        ([0.0] * 5, [54.9, 54.5, 55.1, 55.6, 57.4],
         {"effect": EffectSizeSettings(allowed_decrease=0.8, allowed_increase=1.2)}, C.HIGH, False),
        ([54.9, 54.5, 55.1, 55.6, 57.4], [0.0] * 5,
         {"effect": EffectSizeSettings(allowed_decrease=0.8, allowed_increase=1.2)}, C.LOW, False),
        ([0.0] * 10,
         [0.05000000074505806, 0.05000000074505806, 0.01666666753590107, 0.01666666753590107,
          0.01666666753590107, 0.05000000074505806, 0.03333333507180214, 0.05000000260770321,
          0.05000000260770321, 0.13333333656191826],
         {"critical": True, "nan_strategy": "replace",
          "effect": EffectSizeSettings(critical_decrease=0.8, critical_increase=1.2)},
         C.HIGH, True),
        ([0.0] * 5, [0.0] * 5,
         {"effect": EffectSizeSettings(allowed_decrease=0.8, allowed_increase=1.2)}, C.PASS, False),
    ],
)  # fmt: skip
def test_kayenta_classifier_suite(control, experiment, kwargs, label, critical) -> None:
    # ClassifierSuite (tolerance 0.10, confidence 0.95 unless the case says otherwise).
    options = {"tolerance": 0.10, "confidence": 0.95, **kwargs}
    result = classify(np.array(control), np.array(experiment), name="m", **options)
    assert result.classification is label
    assert result.critical is critical


def test_kayenta_classifier_suite_no_data_cases() -> None:
    empty, five = np.array([]), np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    options = {"tolerance": 0.10, "confidence": 0.95, "direction": "decrease"}
    assert classify(five, empty, **options).classification is C.NODATA
    critical = classify(five, empty, critical=True, **options)
    assert critical.classification is C.NODATA and critical.critical
    assert classify(five, empty, nan_strategy="replace", **options).classification is C.PASS
    assert classify(empty, empty, critical=True, **options).reason  # a reason is given
    required = classify(five, empty, must_have_data=True, **options)
    assert required.classification is C.NODATA_FAIL_METRIC and not required.critical
    # A metric that is critical *and* must have data is a critical Nodata (Kayenta).
    both = classify(five, empty, must_have_data=True, critical=True, **options)
    assert both.classification is C.NODATA and both.critical


def test_zero_mean_deviation_is_nan_and_identical_is_one() -> None:
    high = classify(np.zeros(5), np.array([54.9, 54.5, 55.1, 55.6, 57.4]), confidence=0.95)
    assert math.isnan(high.deviation)
    same = classify(np.zeros(5), np.zeros(5))
    assert same.deviation == 1.0


def test_effect_sizes_by_hand() -> None:
    control, experiment = np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])
    assert mean_ratio(control, experiment) == pytest.approx(1.5)
    # Pairs (e, c) with e > c count 1, ties 1/2: (1 + .5 + 0) + (1 + 1 + .5) + 3 = 7 of 9.
    assert cles(control, experiment) == pytest.approx(7 / 9)
    assert math.isnan(mean_ratio(np.array([0.0, 0.0]), experiment))


def test_effect_size_settings_parse_kayenta_keys_and_reject_mistakes() -> None:
    parsed = effect_size_settings({"measure": "cles", "allowedIncrease": 0.8}, metric="lat")
    assert parsed == EffectSizeSettings("cles", 0.8, 0.5, 0.5, 0.5)
    assert effect_size_settings(None).allowed_increase == 1.0
    with pytest.raises(ValueError, match=r"metric 'lat': unknown key effect_size.allowed"):
        effect_size_settings({"allowed": 1.0}, metric="lat")
    with pytest.raises(ValueError, match="measure must be"):
        effect_size_settings({"measure": "cohen"}, metric="lat")
    with pytest.raises(ValueError, match=r"effect_size.allowed_increase must be in \[0, 1\]"):
        effect_size_settings({"measure": "cles", "allowed_increase": 1.5}, metric="lat")


# --------------------------------------------------------------------------- preprocessing


def test_kayenta_detector_and_transform_suites() -> None:
    # DetectorSuite: IQR detection at factor 1.5 (plain Tukey fences).
    data = np.array([21.0, 23.0, 24.0, 25.0, 50.0, 29.0, 23.0, 21.0])
    assert outlier_mask(data, 1.5, reduce_sensitivity=False).tolist() == [
        False, False, False, False, True, False, False, False,
    ]  # fmt: skip
    two_sided = np.array([1.0, 1.0, 1.0, 5.0, -1.0, -1.0, -1.0, -5.0])
    assert np.flatnonzero(outlier_mask(two_sided, 1.5, reduce_sensitivity=False)).tolist() == [3, 7]
    nist = np.array(NIST_IQR, dtype=float)
    assert np.flatnonzero(outlier_mask(nist, 1.5, reduce_sensitivity=False)).tolist() == [89]
    assert outlier_mask(np.array([]), 1.5).size == 0
    # TransformSuite: NaN removal / replacement, IQR outlier removal.
    assert prepare([0.0, 1.0, math.nan, 1.0, 0.0]).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert prepare([math.nan, None, math.nan]).size == 0
    replaced = prepare([math.nan, 10.1, 20.2, 30.3, None, 40.4], "replace")
    assert replaced.tolist() == [0.0, 10.1, 20.2, 30.3, 0.0, 40.4]
    kept = prepare(data.tolist(), outliers="remove", outlier_factor=1.5)
    # The judge widens the fences to the 1st/99th percentiles: 50 stays in 8 values.
    assert 50.0 in kept.tolist()
    many = [10.0 + 0.1 * i for i in range(200)] + [1000.0]
    assert 1000.0 not in prepare(many, outliers="remove").tolist()


# --------------------------------------------------------------------------- ScorerSuite


def _scored(*items: tuple[str, Classification, str, bool]) -> list[ScoredMetric]:
    return [ScoredMetric(name, label, group, critical) for name, label, group, critical in items]


@pytest.mark.parametrize(
    ("metrics", "weights", "expected"),
    [
        (_scored(("a", C.PASS, "g", False)), {}, 100.0),
        (_scored(("a", C.HIGH, "g", False)), {}, 0.0),
        (_scored(("a", C.NODATA, "g", False)), {}, 0.0),
        (_scored(("a", C.PASS, "p", False), ("b", C.PASS, "p", False),
                 ("c", C.NODATA, "n", False)), {}, 100.0),
        (_scored(("a", C.PASS, "g", False), ("b", C.HIGH, "g", False)), {}, 50.0),
        (_scored(("a", C.PASS, "g", False), ("b", C.HIGH, "g", False),
                 ("c", C.LOW, "g", False)), {}, 33.33),
        (_scored(("a", C.PASS, "g1", False), ("b", C.PASS, "g1", False),
                 ("c", C.HIGH, "g2", False)), {"g1": 75.0, "g2": 25.0}, 75.0),
        (_scored(("a", C.PASS, "g1", False), ("b", C.HIGH, "g1", False),
                 ("c", C.HIGH, "g2", False)), {"g1": 50.0, "g2": 50.0}, 25.0),
        (_scored(("a", C.PASS, "g1", False), ("b", C.NODATA, "g1", False),
                 ("c", C.HIGH, "g2", False)), {"g1": 50.0, "g2": 50.0}, 50.0),
        (_scored(("a", C.PASS, "g", False), ("b", C.HIGH, "g", True)), {}, 0.0),
        (_scored(("a", C.LOW, "g", False), ("b", C.PASS, "g", True)), {}, 50.0),
        (_scored(("a", C.PASS, "g", False), ("b", C.NODATA, "g", True)), {}, 0.0),
        (_scored(("a", C.HIGH, "g1", False), ("b", C.LOW, "g1", False),
                 ("c", C.PASS, "g1", False), ("d", C.HIGH, "g2", False)),
         {"g1": 15.0, "g2": 85.0}, 5.0),
        # Unweighted groups share what the weighted ones leave: 40 + 30 * 1 + 30 * 0.
        (_scored(("a", C.PASS, "w", False), ("b", C.PASS, "u1", False),
                 ("c", C.HIGH, "u2", False)), {"w": 40.0}, 70.0),
    ],
)  # fmt: skip
def test_kayenta_scorer_suite(metrics, weights, expected) -> None:
    # ScorerSuite (WeightedSumScorer) expectations; the last case is ours.
    assert score(metrics, weights).score == expected


def test_nodata_group_scores_zero_and_reason_is_given() -> None:
    result = score(_scored(("a", C.NODATA, "n", False)), {})
    assert result.group_scores == {"n": 0.0}
    assert "NODATA" in (result.reason or "")


# --------------------------------------------------------------------------- per-round values


def test_histogram_per_round_values_by_hand() -> None:
    histogram = Histogram(bounds=(10.0, 20.0, math.inf), buckets=(10, 30, 40))
    # 10 at 5, 20 at 15, 10 above 20 counted at 20: (50 + 300 + 200) / 40.
    assert bucket_mean(histogram) == pytest.approx(13.75)
    # histogram_quantile: rank 20 falls in (10, 20] holding 20, 10 of them below it.
    assert bucket_quantile(0.5, histogram) == pytest.approx(15.0)
    assert bucket_quantile(0.99, histogram) == 20.0  # the +Inf bucket: last finite bound
    assert bucket_quantile(0.1, histogram) == pytest.approx(4.0)  # rank 4 of 10 in [0, 10]
    assert math.isnan(bucket_mean(Histogram(bounds=(1.0, math.inf), buckets=(0, 0))))


# --------------------------------------------------------------------------- the judge

SETTINGS = AnalysisSettings()


def _value_rounds(canary: list[float | None], baseline: list[float | None]) -> list[RoundData]:
    return [
        RoundData(canary={"cpu": c}, baseline={"cpu": b})
        for c, b in zip(canary, baseline, strict=True)
    ]


def _noise(seed: int, n: int, mean: float, sd: float) -> list[float]:
    return np.random.default_rng(seed).normal(mean, sd, n).tolist()


def test_make_judge_builds_the_mann_whitney_judge() -> None:
    judge = make_judge("mann_whitney", [MannWhitneyMetric(name="cpu", kind="value")], SETTINGS)
    assert isinstance(judge, MannWhitneyJudge)
    assert judge.name == "mann_whitney"


def test_metrics_stay_pending_until_min_samples_then_a_regression_fails() -> None:
    judge = MannWhitneyJudge([MannWhitneyMetric(name="cpu", kind="value")], SETTINGS)
    rounds = _value_rounds(_noise(1, 12, 2.0, 0.1), _noise(2, 12, 1.0, 0.1))
    judgements = judge_rounds(judge, rounds)
    for early in judgements[:4]:
        assert early.verdict is Verdict.RUNNING and early.score is None
        assert early.metrics["cpu"].statistics["classification"] is None
    fail = judgements[4]
    assert fail.verdict is Verdict.FAIL and fail.round == 5 and fail.score == 0.0
    cpu = fail.metrics["cpu"]
    assert cpu.verdict is Verdict.FAIL and cpu.round == 5
    assert cpu.statistics["classification"] == "High"
    assert cpu.statistics["interval"][0] > 0.5
    assert len(cpu.evidence) == 5
    # FAIL is final: the verdict and its round stay, whatever later rounds show.
    assert all(j.verdict is Verdict.FAIL and j.round == 5 for j in judgements[5:])


def test_no_difference_passes_only_at_the_budget() -> None:
    judge = MannWhitneyJudge([MannWhitneyMetric(name="cpu", kind="value")], SETTINGS)
    rounds = _value_rounds(_noise(3, 20, 1.0, 0.1), _noise(4, 20, 1.0, 0.1))
    judgements = judge_rounds(judge, rounds)
    assert all(j.verdict is Verdict.RUNNING for j in judgements[:-1])
    assert judgements[-1].verdict is Verdict.PASS and judgements[-1].round == 20
    assert judgements[-1].score == 100.0
    assert judgements[-1].metrics["cpu"].verdict is Verdict.PASS


def test_direction_ignores_the_harmless_side() -> None:
    metric = MannWhitneyMetric(name="cpu", kind="value", direction="decrease")
    judge = MannWhitneyJudge([metric], SETTINGS)
    rounds = _value_rounds(_noise(5, 10, 2.0, 0.1), _noise(6, 10, 1.0, 0.1))
    last = judge_rounds(judge, rounds)[-1]
    assert last.verdict is Verdict.PASS
    assert last.metrics["cpu"].statistics["classification"] == "Pass"


def test_a_critical_metric_fails_the_analysis_despite_a_high_score() -> None:
    metrics = [MannWhitneyMetric(name=f"ok{i}", kind="value") for i in range(9)]
    metrics.append(MannWhitneyMetric(name="cpu", kind="value", critical=True))
    judge = MannWhitneyJudge(metrics, SETTINGS)
    state = judge.initial_state()
    fine, high = _noise(7, 6, 1.0, 0.1), _noise(8, 6, 3.0, 0.1)
    for k in range(6):
        canary = {f"ok{i}": fine[k] for i in range(9)} | {"cpu": high[k]}
        baseline = {f"ok{i}": fine[k] for i in range(9)} | {"cpu": fine[k]}
        state, judgement = judge.update(state, RoundData(canary=canary, baseline=baseline))
        if judgement.verdict is not Verdict.RUNNING:
            break
    assert judgement.verdict is Verdict.FAIL and judgement.round == 5
    assert judgement.score == 0.0
    assert judgement.metrics["cpu"].verdict is Verdict.FAIL
    assert judgement.metrics["ok0"].verdict is Verdict.RUNNING
    assert any("Critical" in r for r in judgement.reasons)


def test_group_weights_and_a_score_between_the_thresholds_is_inconclusive() -> None:
    metrics = [
        MannWhitneyMetric(name="a", kind="value", group="requests"),
        MannWhitneyMetric(name="b", kind="value", group="latency"),
    ]
    settings = AnalysisSettings(group_weights={"requests": 80}, marginal_score=15)
    judge = MannWhitneyJudge(metrics, settings)
    same, high = _noise(9, 8, 1.0, 0.1), _noise(10, 8, 5.0, 0.1)
    rounds = [
        RoundData(canary={"a": s, "b": h}, baseline={"a": s, "b": s})
        for s, h in zip(same, high, strict=True)
    ]
    judgements = judge_rounds(judge, rounds)
    # latency (High) gets the 20% the weighted group leaves: score 80, not below 15.
    assert judgements[4].verdict is Verdict.RUNNING and judgements[4].score == 80.0
    last = judgements[-1]
    assert last.verdict is Verdict.INCONCLUSIVE and last.round == 8 and last.score == 80.0
    assert any("latency 0" in r and "requests 100" in r for r in last.reasons)


def test_missing_data_at_the_budget_is_nodata_and_fails_the_score() -> None:
    metrics = [MannWhitneyMetric(name="cpu", kind="value")]
    rounds = _value_rounds([None] * 6, [1.0] * 6)
    judgements = judge_rounds(MannWhitneyJudge(metrics, SETTINGS), rounds)
    assert all(j.verdict is Verdict.RUNNING for j in judgements[:-1])
    last = judgements[-1]
    assert last.metrics["cpu"].statistics["classification"] == "Nodata"
    assert last.verdict is Verdict.FAIL and last.score == 0.0
    required = [MannWhitneyMetric(name="cpu", kind="value", must_have_data=True)]
    last = judge_rounds(MannWhitneyJudge(required, SETTINGS), rounds)[-1]
    assert last.metrics["cpu"].statistics["classification"] == "NodataFailMetric"
    assert last.verdict is Verdict.FAIL


def test_a_budget_too_short_for_the_test_is_inconclusive_not_a_failure() -> None:
    # 3 vs 3 values can never reach 98%; R would fall back to the data range and a
    # fully separated pair of samples would look "High".
    judge = MannWhitneyJudge([MannWhitneyMetric(name="cpu", kind="value")], SETTINGS)
    last = judge_rounds(judge, _value_rounds([5.0, 5.1, 5.2], [1.0, 1.1, 1.2]))[-1]
    assert last.verdict is Verdict.INCONCLUSIVE and last.round == 3
    assert "budget reached before cpu had 5 values per arm" in last.reasons[0]
    assert last.metrics["cpu"].verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(("nan_strategy", "idle_values"), [("replace", 1), ("remove", 0)])
def test_counts_use_the_error_ratio_and_nan_strategy_handles_idle_rounds(
    nan_strategy: str, idle_values: int
) -> None:
    metric = MannWhitneyMetric(name="errors", kind="counts", nan_strategy=nan_strategy)
    judge = MannWhitneyJudge([metric], SETTINGS)
    rounds = [
        RoundData(
            canary={"errors": Counts(total=0 if k == 0 else 1000, failed=0 if k == 0 else 50)},
            baseline={"errors": Counts(total=1000, failed=5 + k % 3)},
        )
        for k in range(12)
    ]
    judgements = judge_rounds(judge, rounds)
    first = judgements[0].metrics["errors"].evidence[0]
    assert first["canary"] is None and first["baseline"] == pytest.approx(0.005)
    fail = next(j for j in judgements if j.verdict is Verdict.FAIL)
    errors = fail.metrics["errors"]
    assert errors.statistics["classification"] == "High"
    # The idle round is a 0 error ratio with "replace" and no value with "remove".
    assert errors.statistics["n_canary"] == fail.round - 1 + idle_values
    assert errors.statistics["n_baseline"] == fail.round


def test_rounds_with_errors_add_no_values() -> None:
    judge = MannWhitneyJudge([MannWhitneyMetric(name="cpu", kind="value")], SETTINGS)
    state = judge.initial_state()
    for k in range(4):
        state, _ = judge.update(state, RoundData(canary={"cpu": 5.0 + k}, baseline={"cpu": 1.0}))
    state, judgement = judge.update(
        state, RoundData(canary={}, baseline={}, error="prometheus: timeout")
    )
    assert judgement.verdict is Verdict.RUNNING  # still 4 values per arm
    assert judgement.metrics["cpu"].evidence[-1] == {"round": 5, "skipped": "prometheus: timeout"}
    state, judgement = judge.update(state, RoundData(canary={"cpu": 9.0}, baseline={"cpu": 1.1}))
    assert judgement.verdict is Verdict.FAIL and judgement.round == 6


def test_histogram_metric_uses_a_single_quantile_when_configured() -> None:
    bounds = (10.0, 50.0, 100.0, 500.0, math.inf)
    fast = Histogram(bounds=bounds, buckets=(100, 900, 990, 1000, 1000))
    slow = Histogram(bounds=bounds, buckets=(100, 800, 900, 1000, 1000))
    metric = MannWhitneyMetric(name="latency", kind="histogram", quantiles=[0.95])
    judge = MannWhitneyJudge([metric], SETTINGS)
    rounds = [RoundData(canary={"latency": slow}, baseline={"latency": fast})] * 5
    judgement = judge_rounds(judge, rounds)[-1]
    latency = judgement.metrics["latency"]
    assert latency.evidence[0]["canary"] == pytest.approx(bucket_quantile(0.95, slow))
    assert latency.evidence[0]["baseline"] == pytest.approx(bucket_quantile(0.95, fast))
    assert latency.statistics["per_round_value"].startswith("p95")
    assert judgement.verdict is Verdict.FAIL


def test_state_is_json_and_resuming_gives_the_same_judgement() -> None:
    judge = MannWhitneyJudge([MannWhitneyMetric(name="cpu", kind="value")], SETTINGS)
    rounds = _value_rounds([1.0, math.nan, 1.2, 1.1, 0.9, 1.0, 1.3], [1.0, 1.1] * 3 + [1.0])
    state = judge.initial_state()
    for round_data in rounds[:4]:
        state, _ = judge.update(state, round_data)
    state = judge.read_state(json.loads(json.dumps(state.to_json(), allow_nan=False)))
    for index, round_data in enumerate(rounds[4:]):
        state, resumed = judge.update(state, round_data, final=index == 2)
    direct = judge_rounds(judge, rounds)[-1]
    assert resumed == direct


@pytest.mark.parametrize(
    ("metrics", "settings", "message"),
    [
        ([MannWhitneyMetric(name="a", kind="value", group="x")],
         AnalysisSettings(group_weights={"y": 10}), "no metric belongs to: y"),
        ([MannWhitneyMetric(name="a", kind="value", group="x"),
          MannWhitneyMetric(name="b", kind="value", group="y")],
         AnalysisSettings(group_weights={"x": 70, "y": 40}), "more than 100"),
        ([MannWhitneyMetric(name="lat", kind="histogram", quantiles=[0.5, 0.99])], SETTINGS,
         "metric 'lat': quantiles must list exactly one"),
        ([MannWhitneyMetric(name="a", kind="value", effect_size={"bogus": 1.0})], SETTINGS,
         "metric 'a': unknown key effect_size.bogus"),
        ([MannWhitneyMetric(name="a", kind="value")],
         AnalysisSettings(pass_score=60, marginal_score=70), "must not exceed pass_score"),
        ([], SETTINGS, "at least one metric"),
    ],
)  # fmt: skip
def test_bad_configuration_is_refused_with_the_metric_named(metrics, settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        MannWhitneyJudge(metrics, settings)


def test_an_observation_of_the_wrong_kind_names_metric_round_and_arm() -> None:
    judge = MannWhitneyJudge([MannWhitneyMetric(name="errors", kind="counts")], SETTINGS)
    bad = RoundData(canary={"errors": 0.5}, baseline={"errors": Counts(total=10, failed=1)})
    with pytest.raises(ValueError, match=r"'errors' is a counts metric .*round 1, canary"):
        judge.update(judge.initial_state(), bad)
