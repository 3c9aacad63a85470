"""Query templates: escaping, label-name checks, user template directories; and the pure
delta rules of canary.metrics.collect (resets, carried series, histogram checks)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from canary.config import ArmConfig, MetricBase
from canary.errors import MetricsDataError, TemplateError
from canary.metrics.collect import (
    counts_from_deltas,
    groups_from_result,
    histogram_from_deltas,
    pod_breakdown,
    series_deltas,
)
from canary.metrics.prometheus import QueryResult, Sample
from canary.metrics.queries import (
    QueryContext,
    format_duration,
    load_templates,
    promql_string,
    regex_literal,
    template_for,
)
from canary.model import Counts, MetricKind

ARM = ArmConfig(match={"destination_workload": "checkout-canary"})


def context(**kw) -> QueryContext:  # type: ignore[no-untyped-def]
    return QueryContext(namespace="shop", arm=kw.pop("arm", ARM), **kw)


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('a"b', r'"a\"b"'),
        ("a\\b", r'"a\\b"'),
        ("a\nb", r'"a\nb"'),
        ('"}', r'"\"}"'),
        ("tab\tcr\r\x01", r'"tab\tcr\r\x01"'),
        ("ünïcode", '"ünïcode"'),
    ],
)
def test_promql_string_literal(value: str, literal: str) -> None:
    assert promql_string(value) == literal


def test_regex_literal_escapes_re2_metacharacters_only() -> None:
    assert regex_literal("a.b*c|d(e)[f]{g}^$\\+?") == r"a\.b\*c\|d\(e\)\[f\]\{g\}\^\$\\\+\?"
    assert regex_literal("pod-1 x\n") == "pod-1 x\n"


def test_rendered_selector_escapes_every_value() -> None:
    arm = ArmConfig(
        match={"destination_workload": 'x"} or vector(1) #'}, match_regex={"pod": "a.*"}
    )
    query = load_templates().render("istio-requests", context(arm=arm, reporter='s"'))
    assert 'destination_workload="x\\"} or vector(1) #"' in query
    assert 'pod=~"a.*"' in query
    assert 'reporter="s\\""' in query
    assert 'destination_workload_namespace="shop"' in query
    assert "sum by (pod, response_code)" in query


def test_invalid_label_names_are_rejected() -> None:
    arm = ArmConfig.model_construct(match={'pod"}': "x"}, match_regex={})
    with pytest.raises(TemplateError, match="invalid Prometheus label name"):
        load_templates().render("istio-requests", context(arm=arm))
    with pytest.raises(TemplateError, match="pod_label"):
        load_templates().render("istio-requests", context(pod_label="pod) or (x"))


def test_threshold_templates_take_window_and_failure_pattern() -> None:
    query = load_templates().render(
        "success-rate", context(window_seconds=120, failure_codes='5..|4"29')
    )
    assert "[2m]" not in query and "[120s]" in query
    assert 'response_code!~"5..|4\\"29"' in query
    assert "[90500ms]" in load_templates().render("latency-p99", context(window_seconds=90.5))
    for name in ("latency-p50", "latency-p90", "latency-p99", "latency-avg", "error-rate"):
        assert "${" not in load_templates().render(name, context())


def test_format_duration() -> None:
    assert format_duration(60) == "60s"
    assert format_duration(0.25) == "250ms"
    with pytest.raises(TemplateError):
        format_duration(0)


def test_default_templates_by_kind() -> None:
    assert template_for(MetricBase(name="e")) == "istio-requests"
    assert template_for(MetricBase(name="l", kind="histogram")) == "istio-latency"
    assert template_for(MetricBase(name="v", kind="value", query="latency-p99")) == "latency-p99"
    with pytest.raises(TemplateError, match="kind 'value' needs `query`"):
        template_for(MetricBase(name="v", kind="value"))


def test_user_templates_add_and_override(tmp_path: Path) -> None:
    (tmp_path / "grpc-errors.promql").write_text(
        "# my query\nsum(rate(grpc_errors{${arm_selector}}[${window}]))\n"
    )
    (tmp_path / "success-rate.promql").write_text("vector(1) # overridden ${namespace}\n")
    templates = load_templates(str(tmp_path))
    assert "grpc-errors" in templates.names() and "istio-requests" in templates.names()
    assert templates.render("grpc-errors", context()) == (
        'sum(rate(grpc_errors{destination_workload="checkout-canary"}[60s]))'
    )
    assert templates.render("success-rate", context()) == 'vector(1) # overridden "shop"'
    with pytest.raises(TemplateError, match="no query template named 'nope'"):
        templates.get("nope")


def test_broken_user_templates_are_named(tmp_path: Path) -> None:
    (tmp_path / "bad.promql").write_text("sum(x{${selectr}})\n")
    with pytest.raises(TemplateError, match=r"bad.*unknown variable \$\{selectr\}"):
        load_templates(str(tmp_path))
    (tmp_path / "bad.promql").write_text('x{a="$"}\n')
    with pytest.raises(TemplateError, match="lone"):
        load_templates(str(tmp_path / ""))  # a different cache key, re-read
    with pytest.raises(TemplateError, match="not a directory"):
        load_templates(str(tmp_path / "missing"))


# --------------------------------------------------------------------------- delta rules


def test_plain_increase_and_new_series_of_a_known_pod() -> None:
    previous = {("a", "200"): (100, 0.0), ("b", "200"): (50, 0.0)}
    current = {("a", "200"): (130), ("a", "503"): 4, ("b", "200"): 60}
    deltas, kept = series_deltas(previous, current, at=60.0)
    assert deltas == {("a", "200"): 30, ("a", "503"): 4, ("b", "200"): 10}
    assert counts_from_deltas(deltas, "5..") == Counts(44, 4)
    assert kept[("a", "503")] == (4, 60.0)


def test_reset_counts_the_new_values_for_the_whole_pod() -> None:
    previous = {("a", "200"): (1000, 0.0), ("a", "503"): (20, 0.0), ("a", "404"): (3, 0.0)}
    current = {("a", "200"): 5, ("a", "503"): 30}  # 503 grew past its old value
    deltas, kept = series_deltas(previous, current, at=60.0)
    assert deltas == {("a", "200"): 5, ("a", "503"): 30}
    assert ("a", "404") not in kept  # belonged to the process before the restart


def test_disappearing_series_are_carried_and_resume_exactly() -> None:
    previous = {("a", "200"): (100, 0.0), ("b", "200"): (40, 0.0)}
    deltas, kept = series_deltas(previous, {("a", "200"): 110}, at=60.0)
    assert deltas == {("a", "200"): 10}
    assert kept[("b", "200")] == (40, 0.0)
    deltas, _ = series_deltas(kept, {("a", "200"): 120, ("b", "200"): 75}, at=120.0)
    assert deltas == {("a", "200"): 10, ("b", "200"): 35}


def test_new_pod_uses_its_earlier_value_when_prometheus_had_one() -> None:
    deltas, _ = series_deltas(
        {}, {("n", "200"): 500, ("n", "503"): 2, ("m", "200"): 7}, at=60.0,
        base={("n", "200"): 480},
    )  # fmt: skip
    assert deltas == {("n", "200"): 20, ("n", "503"): 2, ("m", "200"): 7}


def test_histogram_sums_pods_and_checks_them() -> None:
    deltas = {
        ("a", "10"): 1, ("a", "100"): 3, ("a", "+Inf"): 4,
        ("b", "10.0"): 0, ("b", "100"): 2, ("b", "+Inf"): 2,
    }  # fmt: skip
    histogram = histogram_from_deltas(deltas, {"a", "b"}, where="m")
    assert histogram.bounds == (10.0, 100.0, math.inf) and histogram.buckets == (1, 5, 6)

    disagree = {("a", "10"): 1, ("a", "+Inf"): 1, ("b", "25"): 1, ("b", "+Inf"): 1}
    with pytest.raises(MetricsDataError, match=r"disagree.*'a' with le=\[10, \+Inf\].*'b'"):
        histogram_from_deltas(disagree, {"a", "b"}, where="m")
    with pytest.raises(MetricsDataError, match="pod 'a' has buckets that are not cumulative"):
        histogram_from_deltas({("a", "1"): 5, ("a", "+Inf"): 3}, {"a"}, where="m")
    with pytest.raises(MetricsDataError, match=r"le='1' and le='1\.0'"):
        histogram_from_deltas({("a", "1"): 1, ("a", "1.0"): 1, ("a", "+Inf"): 1}, {"a"}, where="m")
    with pytest.raises(MetricsDataError, match=r"no \+Inf bucket"):
        histogram_from_deltas({("a", "1"): 1}, {"a"}, where="m")
    with pytest.raises(MetricsDataError, match="not a number"):
        histogram_from_deltas({("a", "fast"): 1}, {"a"}, where="m")


def test_the_pod_breakdown_reads_only_the_pods_present_in_the_round() -> None:
    # Pod "gone" reports no series this round: its carried series (other bounds, a
    # bound written twice, one that is no number) are neither listed nor checked.
    deltas = {
        ("a", "10"): 1, ("a", "+Inf"): 2,
        ("gone", "25"): 0, ("gone", "25.0"): 0, ("gone", "fast"): 0, ("gone", "+Inf"): 0,
    }  # fmt: skip
    pods = pod_breakdown(deltas, MetricKind.HISTOGRAM, "5..", {"a"}, where="m")
    assert list(pods) == ["a"]
    assert pods["a"].bounds == (10.0, math.inf) and pods["a"].buckets == (1, 2)
    counts = {("a", "200"): 9, ("a", "503"): 1, ("gone", "500"): 0}
    assert pod_breakdown(counts, MetricKind.COUNTS, "5..", {"a"}, where="m") == {"a": Counts(10, 1)}


def test_counter_results_must_be_integers_with_the_right_labels() -> None:
    def result(*samples: Sample) -> QueryResult:
        return QueryResult(query="q", result_type="vector", samples=samples)

    ok = result(Sample({"pod": "a", "response_code": "200"}, 12.0, 0))
    assert groups_from_result(ok, MetricKind.COUNTS, "pod", "m") == {("a", "200"): 12}
    with pytest.raises(MetricsDataError, match="non-negative integers"):
        groups_from_result(
            result(Sample({"pod": "a", "response_code": "200"}, 1.5, 0)), MetricKind.COUNTS,
            "pod", "m",
        )  # fmt: skip
    with pytest.raises(MetricsDataError, match="lacks the label"):
        groups_from_result(result(Sample({"pod": "a"}, 1, 0)), MetricKind.HISTOGRAM, "pod", "m")
