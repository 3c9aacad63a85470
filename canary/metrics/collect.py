"""Round collection: cumulative counter snapshots -> exact integer per-arm deltas.

At each round boundary canary takes an instant snapshot of the raw cumulative
counters of each arm, one series per pod and response code (counts) or per pod and
`le` (histograms), and computes the deltas itself (docs/architecture.md); `rate()` and
`increase()` extrapolate and would give fractions.

Rules, per series keyed by (pod, code) or (pod, le):

- present before and now: delta = new - old;
- **reset**: when any series of a pod went down, the pod's counters were reset (its
  Envoy restarted; all its counters restart together), so every series of that pod
  counts delta = new, and the pod's series that did not come back are forgotten;
- **disappearing**: a series in the previous snapshot but not in this one (scrape
  gap, pod gone) contributes 0 and is carried forward with its last value, so when
  it comes back only what happened since counts;
- **new series of a known pod** (the pod has other series in the previous
  snapshot): Envoy creates a series at its first request, so the series was born
  after the previous snapshot and its whole value counts (the first 5xx of a pod
  typically appears this way);
- **new pod**: a pod the analysis has never seen. Whether it *started inside the
  round* is asked of Prometheus: the same template is evaluated for those pods at
  the previous boundary through ``last_over_time((...)[1h:1m])``. Series found there
  existed before (a scrape gap, a pod missed by the warm-up): their value then is
  the base and only the increase counts. Series not found there belong to a pod
  that had no sample in the hour before the round, i.e. it started inside the round
  (or served its first request in it), and count in full.

Histograms: per pod, bounds are the `le` values parsed as floats (`le="1"` and
`le="1.0"` in one pod is an error), deltas must be cumulative (non-decreasing in
`le`) and end with `+Inf`, and every pod of an arm must have the same bounds —
otherwise the round fails with an error naming the pods. A pod that reports some of
its buckets but lacks others it reported before is a partial answer and fails the
round (Envoy keeps all buckets of a live pod); a known pod reporting a bucket the
snapshot lacks has that bucket's earlier value looked up like a new pod's. A failed
round keeps the previous snapshot, so the next complete answer recovers.

Ambient mode (``reporter = "waypoint"``): the series come from waypoint proxies, so a
series is keyed by the waypoint pod *and* the destination workload and revision
(`canary.metrics.series_keys`); every rule above applies with "pod" read as "that
key", except resets, which are detected per waypoint pod (all its destinations'
counters restart together), and the look-back, which asks for the waypoint pods.

The first round of an analysis only takes the snapshot (warm-up). A round whose
queries fail returns `RoundData(error=...)` and the previous snapshot unchanged, so
the next round's deltas cover both intervals and nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import re
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from canary.config import CanaryConfig, MetricConfig
from canary.errors import MetricsDataError, MetricsError
from canary.metrics.prometheus import (
    PrometheusClient,
    QueryResult,
    RangeSeries,
    Sample,
    to_unix,
)
from canary.metrics.queries import (
    QueryContext,
    TemplateSet,
    format_duration,
    load_templates,
    regex_literal,
    template_for,
)
from canary.metrics.series_keys import SeriesKeys
from canary.model import Arm, Counts, Histogram, MetricKind, Observation, RoundData

__all__ = [
    "NEW_POD_LOOKBACK",
    "SNAPSHOT_VERSION",
    "ArmSeries",
    "collect_round",
    "counts_from_deltas",
    "histogram_from_deltas",
    "raw_snapshots",
    "series_deltas",
]

log = logging.getLogger("canary.metrics")

SNAPSHOT_VERSION = 2
#: How far before a round canary looks for the earlier counters of a pod it has
#: never seen; a pod without a sample in this span started inside the round.
NEW_POD_LOOKBACK = 3600.0
#: Resolution of that look-back subquery (below Prometheus' 5-minute lookback).
NEW_POD_STEP = 60.0
#: Series gone for longer than this are dropped from the carried snapshot.
CARRY_SECONDS = 6 * 3600.0

Key = tuple[str, str]  # (pod, response_code) or (pod, le)
#: Per series: (cumulative value, unix time of the snapshot where last present).
ArmSeries = dict[Key, tuple[int, float]]


# --------------------------------------------------------------------------- pure part


def _pods(keys: Iterable[Key]) -> set[str]:
    return {key[0] for key in keys}


def series_deltas(
    previous: Mapping[Key, tuple[int, float]],
    current: Mapping[Key, int],
    *,
    at: float,
    base: Mapping[Key, int] | None = None,
    owner: Callable[[str], str] | None = None,
    traces: Mapping[Key, Sequence[tuple[float, int]]] | None = None,
) -> tuple[dict[Key, int], ArmSeries]:
    """Per-series deltas from `previous` to `current` and the snapshot to keep.

    `base` holds earlier values of series of pods absent from `previous` (from the
    look-back query); a series with neither a previous value nor a base counts in
    full (its pod is known, or it started inside the round). See the module doc.
    `owner` maps a key's first element to the Envoy whose counters restart together
    (the pod itself by default; its waypoint pod in ambient mode) and `traces` holds
    in-round values (ambient mode); both are `traced_deltas`'s, the one rule.
    """
    return traced_deltas(
        previous,
        current,
        traces or {},
        at=at,
        base=base or {},
        owner=owner or _same,
    )


def _same(series: str) -> str:
    return series


def traced_deltas(
    previous: Mapping[Key, tuple[int, float]],
    current: Mapping[Key, int],
    traces: Mapping[Key, Sequence[tuple[float, int]]],
    *,
    at: float,
    base: Mapping[Key, int],
    owner: Callable[[str], str],
) -> tuple[dict[Key, int], ArmSeries]:
    """Deltas as reset-adjusted increases from the previous value, along each series'
    in-round trace (ambient mode; empty in sidecar mode), to the current value.

    `traces` holds each series' (time, value) points inside the round (a subquery at
    the waypoints' scrape interval, so every scrape Prometheus kept is seen); the
    boundaries are the previous (or `base`) value and the current one at `at`. A drop
    of any series of an `owner` (the Envoy: a pod's sidecar, or a waypoint pod)
    between two instants means it restarted then: from that instant every series of
    that owner counts its value in full, even one whose new value is already above
    its old one (buckets of a histogram, busy destinations). A series absent for a
    while (Envoy drops a restarted proxy's series until their next request) that comes
    back lower shows the same restart late, somewhere in its gap: each drop is an
    interval, and an owner's restarts are the fewest instants that explain all of its
    drops (`_restart_instants`). Without traces this is
    the sidecar rule of the module doc, judged at the boundary. With them, a waypoint
    that restarts and climbs back inside a round is counted exactly, and the requests
    it served before the restart (up to its last scrape) are kept; a series gone at
    the boundary (a waypoint scaled in) counts its increase up to its last trace
    point. Previous series of an owner that restarted and did not come back are
    forgotten (their next appearance counts in full).
    """
    starts: dict[Key, int] = {}
    drops: dict[str, list[tuple[float, float]]] = {}  # owner -> (after, at) of each drop
    # Per series with a trace or a drop: its in-round values, then its current one (a
    # gone series: its trace alone); any other series' chain is its current value.
    chains: dict[Key, Sequence[tuple[float, int]]] = {}
    for key, value in current.items():
        entry = previous.get(key)
        start = entry[0] if entry is not None else base.get(key, 0)
        starts[key] = start
        trace = traces.get(key)
        if trace or value < start:
            since = entry[1] if entry is not None else -math.inf
            chain = chains[key] = [*(trace or ()), (at, value)]
            _drops(start, since, chain, drops.setdefault(owner(key[0]), []))
    gone = [key for key in previous if key not in current and traces.get(key)]
    for key in gone:
        starts[key] = previous[key][0]
        chains[key] = traces[key]
        _drops(starts[key], previous[key][1], traces[key], drops.setdefault(owner(key[0]), []))
    resets = {who: _restart_instants(found) for who, found in drops.items() if found}
    kept: ArmSeries = {key: (value, at) for key, value in current.items()}
    if not resets and not gone:  # the usual round: no restart, every delta is a difference
        deltas = {key: value - starts[key] for key, value in current.items()}
    else:
        deltas = {}
        for key in (*current, *gone):
            chain = chains.get(key) or ((at, current[key]),)
            restarts = resets.get(owner(key[0]), ())
            entry = previous.get(key)
            last, since = starts[key], entry[1] if entry is not None else -math.inf
            total = 0
            for ts, value in chain:
                restarted = value < last or any(since < r <= ts for r in restarts)
                total += value if restarted else value - last
                last, since = value, ts
            deltas[key] = total
            kept[key] = (last, at)
    for key, (value, seen) in previous.items():
        if key in kept or at - seen > CARRY_SECONDS or (resets and owner(key[0]) in resets):
            continue
        kept[key] = (value, seen)
    return deltas, kept


def _drops(
    start: int,
    since: float,
    chain: Sequence[tuple[float, int]],
    found: list[tuple[float, float]],
) -> None:
    """Append to `found` each ``(after, at)`` between which a series' value went down.

    `start` is its value at `since`; a drop after a gap in `chain` spans the gap.
    """
    last, last_ts = start, since
    for ts, value in chain:
        if value < last:
            found.append((last_ts, ts))
        last, last_ts = value, ts


def _restart_instants(drops: Iterable[tuple[float, float]]) -> set[float]:
    """The fewest instants `r` with ``after < r <= at`` for every drop ``(after, at)``.

    The greedy stabbing of intervals by their ends: the drop that ends first fixes a
    restart at its end, which explains every drop seen around it (the same restart,
    noticed later by a series that was absent meanwhile); a drop starting at or after
    that instant is a later restart.
    """
    instants: list[float] = []
    for after, at in sorted(drops, key=lambda drop: drop[1]):
        if not instants or after >= instants[-1]:
            instants.append(at)
    return set(instants)


def counts_from_deltas(deltas: Mapping[Key, int], failure_codes: str) -> Counts:
    """Counts(total, failed); a failure is a code fully matching `failure_codes`."""
    total = failed = 0
    for (_, code), value in deltas.items():
        total += value
        if _is_failure(failure_codes, code):
            failed += value
    return Counts(total=total, failed=failed)


@functools.lru_cache(maxsize=4096)
def _is_failure(failure_codes: str, code: str) -> bool:
    """Whether `code` fully matches `failure_codes` (a handful of codes per metric)."""
    return re.fullmatch(failure_codes, code) is not None


@functools.lru_cache(maxsize=4096)
def _le_value(raw: str) -> float:
    return float(raw.replace("Inf", "inf"))


def _parse_le(raw: str, pod: str, where: str) -> float:
    try:
        return _le_value(raw)
    except ValueError:
        raise MetricsDataError(
            f"{where}: pod {pod!r} has a bucket le={raw!r} that is not a number"
        ) from None


def histogram_from_deltas(
    deltas: Mapping[Key, int], present_pods: Iterable[str], *, where: str
) -> Histogram:
    """Sum per-`le` bucket deltas over pods, checking bounds agree and are cumulative."""
    return _histogram(_pod_buckets(deltas, where), set(present_pods), where)


def _pod_buckets(deltas: Mapping[Key, int], where: str) -> dict[str, dict[float, int]]:
    """Per pod, bound -> delta; two `le` texts of one bound in one pod are an error."""
    per_pod: dict[str, dict[float, int]] = {}
    for (pod, le), value in deltas.items():
        bound = _parse_le(le, pod, where)
        buckets = per_pod.get(pod)
        if buckets is None:
            buckets = per_pod[pod] = {}
        elif bound in buckets:
            first = next(k[1] for k in deltas if k[0] == pod and _le_value(k[1]) == bound)
            raise MetricsDataError(
                f"{where}: pod {pod!r} has two buckets for one bound: le={first!r} and le={le!r}"
            )
        buckets[bound] = value
    return per_pod


def _histogram(
    per_pod: Mapping[str, Mapping[float, int]], present: set[str], where: str
) -> Histogram:
    """The sum of `per_pod`'s buckets; the `present` pods must agree on their bounds."""
    pods = sorted(per_pod)
    layouts: dict[tuple[float, ...], list[str]] = {}
    for pod in pods:
        if pod in present:
            layouts.setdefault(tuple(sorted(per_pod[pod])), []).append(pod)
    if len(layouts) > 1:
        described = "; ".join(
            f"{', '.join(repr(p) for p in pods)} with le={_bounds_text(bounds)}"
            for bounds, pods in sorted(layouts.items(), key=lambda item: item[1])
        )
        raise MetricsDataError(f"{where}: pods disagree on histogram buckets: {described}")
    if not layouts:
        raise MetricsDataError(f"{where}: no histogram buckets")
    bounds, shown = next(iter(layouts.items()))
    if not math.isinf(bounds[-1]):
        raise MetricsDataError(f"{where}: pods {', '.join(map(repr, shown))} have no +Inf bucket")
    totals = [0] * len(bounds)
    for pod in pods:
        buckets = per_pod[pod]
        if pod in present:
            values = [buckets[b] for b in bounds]
            if values != sorted(values):
                raise MetricsDataError(
                    f"{where}: pod {pod!r} has buckets that are not cumulative in this round "
                    f"(deltas {values} for le={_bounds_text(bounds)})"
                )
        else:  # carried series only: their deltas are 0
            values = [buckets.get(b, 0) for b in bounds]
        totals = [t + v for t, v in zip(totals, values, strict=True)]
    return Histogram(bounds=bounds, buckets=tuple(totals))


def pod_breakdown(
    deltas: Mapping[Key, int],
    kind: MetricKind,
    failure_codes: str,
    present_pods: Iterable[str],
    *,
    where: str,
) -> dict[str, Observation]:
    """The round's observation per pod (the arm's observation is their sum).

    Only pods with series in this round are listed; a pod whose series are all
    carried forward contributes nothing to the round and is left out.
    """
    present = set(present_pods)
    if kind is MetricKind.HISTOGRAM:
        return _pod_histograms(
            _pod_buckets({k: v for k, v in deltas.items() if k[0] in present}, where), where
        )
    by_pod: dict[str, dict[Key, int]] = {}
    for key, value in deltas.items():
        if key[0] in present:
            by_pod.setdefault(key[0], {})[key] = value
    return {pod: counts_from_deltas(by_pod[pod], failure_codes) for pod in sorted(by_pod)}


def _pod_histograms(
    per_pod: Mapping[str, Mapping[float, int]], where: str
) -> dict[str, Observation]:
    """Each pod's histogram from its buckets (`_pod_buckets`)."""
    return {pod: _histogram({pod: per_pod[pod]}, {pod}, where) for pod in sorted(per_pod)}


def _check_complete(
    before: Mapping[Key, tuple[int, float]], current: Mapping[Key, int], where: str
) -> None:
    """Fail a histogram answer in which a reporting pod lacks buckets it had before.

    Envoy keeps every bucket of a histogram as long as the pod lives, so a pod that
    reports some buckets but not others is a partial answer (a proxy, a federated or
    remote-read Prometheus cutting series). Accepting it would carry the missing
    buckets' old values into the snapshot, and every later round's deltas would mix
    two intervals. A pod whose counters went down restarted: its old buckets are
    forgotten instead (see `series_deltas`).
    """
    present = _pods(current)
    reset = {key[0] for key, value in current.items() if key in before and value < before[key][0]}
    missing: dict[str, list[str]] = {}
    for pod, le in before:
        if pod in present and pod not in reset and (pod, le) not in current:
            missing.setdefault(pod, []).append(le)
    if missing:
        described = "; ".join(
            f"pod {pod!r} lacks le={', '.join(sorted(les, key=_le_value))}"
            for pod, les in sorted(missing.items())
        )
        raise MetricsDataError(
            f"{where}: incomplete answer, {described} (reported at the previous round); "
            "the round is not counted and the snapshot is kept"
        )


def _bounds_text(bounds: Iterable[float]) -> str:
    return "[" + ", ".join("+Inf" if math.isinf(b) else f"{b:g}" for b in bounds) + "]"


def _integer(value: float, labels: Mapping[str, str], where: str) -> int:
    if not math.isfinite(value) or value < 0 or not float(value).is_integer():
        raise MetricsDataError(
            f"{where}: series {dict(labels)} has value {value!r}; "
            "counters must be non-negative integers"
        )
    return int(value)


def groups_from_result(
    result: QueryResult, kind: MetricKind, keys: SeriesKeys | str, where: str
) -> dict[Key, int]:
    """The (series, code|le) -> integer counter map of a counter template's result.

    `keys` says which labels identify a series (`SeriesKeys`; a label name: the pod
    label of sidecar mode).
    """
    if isinstance(keys, str):
        keys = SeriesKeys(keys)
    pod_label = keys.grouping
    if result.result_type != "vector":
        raise MetricsDataError(
            f"{where}: a {kind.value} template must return an instant vector, "
            f"got {result.result_type}",
            query=result.query,
        )
    second = "response_code" if kind is MetricKind.COUNTS else "le"
    groups: dict[Key, int] = {}
    for sample in result.samples:
        labels = sample.labels
        series = keys.series(labels)
        if series is None or second not in labels:
            raise MetricsDataError(
                f"{where}: series {dict(labels)} lacks the label {pod_label!r} or {second!r}; "
                f"a {kind.value} template must return one series per {pod_label} and {second}",
                query=result.query,
            )
        key = (series, labels[second])
        if key in groups:
            raise MetricsDataError(
                f"{where}: two series for {pod_label}={key[0]!r}, {second}={key[1]!r}; "
                f"aggregate with sum by ({pod_label}, {second})",
                query=result.query,
            )
        groups[key] = _integer(sample.value, labels, where)
    return groups


# --------------------------------------------------------------------------- snapshot form


def _arm_to_json(series: ArmSeries) -> dict[str, Any]:
    """``{"pods": {pod: {code_or_le: [value, last_seen_unix]}}}`` (plain JSON keys)."""
    pods: dict[str, dict[str, list]] = {}
    for (pod, second), (value, seen) in series.items():
        pods.setdefault(pod, {})[second] = [value, seen]
    return {"pods": pods}


def _arm_from_json(data: Mapping[str, Any] | None, keep: Container[str] | None = None) -> ArmSeries:
    """The `_arm_to_json` form read back; with `keep`, only the codes or `le`s in it."""
    if not data:
        return {}
    return {
        (pod, second): (int(value), float(seen))
        for pod, by_second in data.get("pods", {}).items()
        for second, (value, seen) in by_second.items()
        if keep is None or second in keep
    }


def _arm_seconds(data: Mapping[str, Any] | None) -> set[str]:
    """The codes or `le`s named in an `_arm_to_json` form."""
    if not data:
        return set()
    return {second for by_second in data.get("pods", {}).values() for second in by_second}


def raw_snapshots(snapshot: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{metric: {arm: raw}}`` of a snapshot, as `store.record_round` stores it."""
    if not snapshot:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, metric in snapshot.get("metrics", {}).items():
        arms = metric.get("arms") or {}
        if "value" in metric:
            arms = {arm: {"value": value} for arm, value in metric["value"].items()}
        out[name] = {arm: {"query": metric.get("query"), **data} for arm, data in arms.items()}
    return out


# --------------------------------------------------------------------------- one request


#: Label that tells the parts of a combined snapshot query apart.
PART_LABEL = "canary_part"


def combine_queries(queries: list[str]) -> str:
    """One PromQL expression returning the series of every query, each tagged.

    ``label_replace(q, "canary_part", "<i>", "", "")`` adds the tag to part i; `or`
    keeps every series because the tags differ. One request per canary and round
    instead of one per metric and arm: the HTTP round trip, not Prometheus, is what
    limits a round of a thousand canaries.
    """
    return " or ".join(
        f'label_replace(({query}), "{PART_LABEL}", "{index}", "", "")'
        for index, query in enumerate(queries)
    )


def split_combined(result: QueryResult, queries: list[str]) -> list[QueryResult]:
    """The per-part results of a `combine_queries` answer (or of a subquery over one)."""
    if result.result_type == "matrix":
        return _split_matrix(result, queries)
    if result.result_type != "vector":
        raise MetricsDataError(
            f"a snapshot query must return an instant vector, got {result.result_type}",
            query=result.query,
        )
    parts: list[list[Sample]] = [[] for _ in queries]
    count = len(queries)
    for sample in result.samples:  # the tag stays in the labels: no copy per sample
        index = sample.labels.get(PART_LABEL)
        if index is None or not index.isdigit() or int(index) >= count:
            raise MetricsDataError(
                f"series {dict(sample.labels)} of a combined snapshot query has no valid "
                f"{PART_LABEL!r}",
                query=result.query,
            )
        parts[int(index)].append(sample)
    return [
        QueryResult(
            query=query,
            result_type="vector",
            samples=samples,
            warnings=result.warnings if index == 0 else (),
            seconds=result.seconds,
        )
        for index, (query, samples) in enumerate(zip(queries, parts, strict=True))
    ]


async def _trace_if_reset(
    client: PrometheusClient, combined: str, at: float, prev_at: float, step: float
) -> QueryResult | None:
    """The in-round traces of a combined query, fetched only when some series reset.

    First ``resets((q)[window + step:step]) > 0``: which series went down between two
    scrapes inside the round (the extra step includes a point at or before the
    previous boundary, so a restart right after it is seen too). Almost always
    nothing did, and the answer is empty: no trace is needed, the boundary values
    give the exact deltas. Otherwise the traces themselves, ``(q)[window:step]``.
    """
    window, resolution = at - prev_at, format_duration(step)
    probe = f"resets(({combined})[{format_duration(window + step)}:{resolution}]) > 0"
    if not (await client.query(probe, at)).samples:
        return None
    return await client.query(f"({combined})[{format_duration(window)}:{resolution}]", at)


def _split_matrix(result: QueryResult, queries: list[str]) -> list[QueryResult]:
    parts: list[list[RangeSeries]] = [[] for _ in queries]
    for series in result.series:
        index = series.labels.get(PART_LABEL)
        if index is None or not index.isdigit() or int(index) >= len(queries):
            raise MetricsDataError(
                f"series {dict(series.labels)} of a combined trace query has no valid "
                f"{PART_LABEL!r}",
                query=result.query,
            )
        parts[int(index)].append(series)
    return [
        QueryResult(query=query, result_type="matrix", series=found, seconds=result.seconds)
        for query, found in zip(queries, parts, strict=True)
    ]


# --------------------------------------------------------------------------- I/O part


@dataclass(frozen=True, slots=True)
class _Plan:
    metric: MetricConfig
    arm: Arm
    template: str
    context: QueryContext
    query: str
    #: Histograms only: the `le` texts asked for (the judged bounds and +Inf); None: all.
    les: tuple[str, ...] | None = None


#: Rendered plans per (canary, template set) object: a canary's queries are the same
#: every round, and rendering (escaping every matcher) costs more than judging.
_PLAN_CACHE: dict[tuple[int, int], tuple[CanaryConfig, TemplateSet, tuple[_Plan, ...]]] = {}


def _plans(canary: CanaryConfig, templates: TemplateSet) -> tuple[_Plan, ...]:
    key = (id(canary), id(templates))
    hit = _PLAN_CACHE.get(key)
    if hit is not None and hit[0] is canary and hit[1] is templates:
        return hit[2]
    plans = _render_plans(canary, templates)
    if len(_PLAN_CACHE) >= 4096:
        _PLAN_CACHE.clear()
    _PLAN_CACHE[key] = (canary, templates, plans)
    return plans


def _render_plans(canary: CanaryConfig, templates: TemplateSet) -> tuple[_Plan, ...]:
    plans = []
    keys = SeriesKeys.of(canary)
    for metric in canary.metrics:
        name = template_for(metric)
        for arm in Arm:
            context = QueryContext(
                namespace=canary.namespace,
                arm=canary.arms[arm.value],
                reporter=canary.reporter,
                pod_label=canary.pod_label,
                window_seconds=canary.interval,
                failure_codes=metric.failure_codes,
                series_labels=keys.labels(),
            )
            plans.append(_Plan(metric, arm, name, context, templates.render(name, context)))
    return tuple(plans)


def _judged_les(stored: Iterable[str], bounds: Sequence[float]) -> tuple[str, ...] | None:
    """The `le` texts of `bounds` and +Inf as the previous snapshot spells them
    (`stored`: the snapshot's `le` texts).

    None (ask for every bucket) unless each bound and +Inf is found there.
    """
    wanted = set(bounds)
    texts: set[str] = set()
    found: set[float] = set()
    for le in stored:
        try:
            value = _le_value(le)
        except ValueError:
            continue  # the round reports it (an `le` that is not a number)
        if value in wanted or math.isinf(value):
            texts.add(le)
            found.add(value)
    if not wanted <= found or not any(math.isinf(v) for v in found):
        return None
    return tuple(sorted(texts, key=_le_value))


#: Narrowed plans per (plan, le texts): rendered once, like `_PLAN_CACHE`.
_NARROW_CACHE: dict[tuple[int, tuple[str, ...]], tuple[_Plan, _Plan]] = {}


def _narrowed(plan: _Plan, templates: TemplateSet, les: tuple[str, ...]) -> _Plan:
    """`plan` asking only for the buckets `les` (an ``le=~"..."`` matcher in the selector)."""
    key = (id(plan), les)
    hit = _NARROW_CACHE.get(key)
    if hit is not None and hit[0] is plan:
        return hit[1]
    pattern = "|".join(regex_literal(le) for le in les)
    context = dataclasses.replace(
        plan.context, extra_match_regex={**(plan.context.extra_match_regex or {}), "le": pattern}
    )
    narrowed = dataclasses.replace(
        plan, context=context, query=templates.render(plan.template, context), les=les
    )
    if len(_NARROW_CACHE) >= 4096:
        _NARROW_CACHE.clear()
    _NARROW_CACHE[key] = (plan, narrowed)
    return narrowed


def _narrow_plans(
    plans: Sequence[_Plan],
    templates: TemplateSet,
    prev_metrics: Mapping[str, Any],
    bounds: Mapping[str, Sequence[float]],
) -> list[_Plan]:
    """Histogram plans narrowed to the judged bounds where the snapshot names them all."""
    out = []
    for plan in plans:
        stored = prev_metrics.get(plan.metric.name)
        judged = bounds.get(plan.metric.name)
        if (
            plan.metric.kind is MetricKind.HISTOGRAM
            and judged
            and stored is not None
            and stored.get("kind") == MetricKind.HISTOGRAM.value
        ):
            les = _judged_les(_arm_seconds((stored.get("arms") or {}).get(plan.arm.value)), judged)
            if les is not None:
                plan = _narrowed(plan, templates, les)
        out.append(plan)
    return out


def _lookback_query(
    plan: _Plan, templates: TemplateSet, pods: Iterable[str], keys: SeriesKeys
) -> str:
    pattern = "|".join(regex_literal(p) for p in sorted({keys.owner(p) for p in pods}))
    context = QueryContext(
        namespace=plan.context.namespace,
        arm=plan.context.arm,
        reporter=plan.context.reporter,
        pod_label=plan.context.pod_label,
        window_seconds=plan.context.window_seconds,
        failure_codes=plan.context.failure_codes,
        extra_match_regex={
            **(plan.context.extra_match_regex or {}),
            plan.context.pod_label: pattern,
        },
        series_labels=plan.context.series_labels,
    )
    inner = templates.render(plan.template, context)
    lookback = format_duration(NEW_POD_LOOKBACK)
    step = format_duration(NEW_POD_STEP)
    return f"last_over_time(({inner})[{lookback}:{step}])"


def _where(canary: CanaryConfig, plan: _Plan) -> str:
    return f"canary {canary.name}, metric {plan.metric.name}, arm {plan.arm.value}"


async def _counter_observation(
    client: PrometheusClient,
    canary: CanaryConfig,
    plan: _Plan,
    templates: TemplateSet,
    result: QueryResult,
    previous: Mapping[str, Any] | None,
    prev_at: float | None,
    at: float,
    traced: QueryResult | None = None,
) -> tuple[Observation, dict[str, Any], list[str], dict[str, Observation]]:
    where = _where(canary, plan)
    kind = plan.metric.kind
    keys = SeriesKeys.of(canary)
    current = groups_from_result(result, kind, keys, where)
    notes: list[str] = []
    if previous is None or prev_at is None:  # warm-up for this metric
        kept: ArmSeries = {key: (value, at) for key, value in current.items()}
        return None, _arm_to_json(kept), notes, {}
    # Buckets no longer asked for (`plan.les`) are no longer tracked.
    before = _arm_from_json(previous, None if plan.les is None else frozenset(plan.les))
    new_pods = _pods(current) - _pods(before)
    if kind is MetricKind.HISTOGRAM:
        _check_complete(before, current, where)
        # Envoy creates all buckets of a pod at once: a known pod with a bucket the
        # stored snapshot lacks means that snapshot was partial. Its earlier value is
        # looked up like a new pod's, so the round's buckets all cover one interval.
        new_pods |= {pod for (pod, le) in current if (pod, le) not in before}
    base: dict[Key, int] = {}
    if new_pods:
        query = _lookback_query(plan, templates, new_pods, keys)
        found = await client.query(query, prev_at)
        base = groups_from_result(found, kind, keys, where)
        started = sorted(keys.describe(p) for p in new_pods - _pods(base))
        if started:
            notes.append(f"{where}: new pod(s) started in this round: {', '.join(started)}")
        if base:
            notes.append(
                f"{where}: pod(s) seen before the round counted from their earlier value: "
                f"{', '.join(sorted(keys.describe(p) for p in _pods(base)))}"
            )
    traces: dict[Key, list[tuple[float, int]]] = {}
    if keys.ambient and traced is not None:
        traces = _traces(traced, kind, keys, where, prev_at, at)
    deltas, kept = series_deltas(before, current, at=at, base=base, owner=keys.owner, traces=traces)
    if not current and not kept:
        return None, _arm_to_json(kept), notes, {}
    per_pod: dict[str, dict[float, int]] = {}
    if kind is MetricKind.COUNTS:
        observation: Observation = counts_from_deltas(deltas, plan.metric.failure_codes)
    elif current:
        per_pod = _pod_buckets(deltas, where)
        observation = _histogram(per_pod, _pods(current), where)
    else:
        observation = None  # only carried series: no pod reported in this round
    pods: dict[str, Observation] = {}
    if observation is not None:
        evidence, present = _evidence_pods(deltas, _pods(current), keys)
        if evidence is None:
            notes.append(
                f"{where}: waypoint metrics carry no destination pod (set"
                " destination_pod_label where a Telemetry resource adds one): no per-pod"
                " evidence"
            )
        elif per_pod and not keys.ambient:  # sidecar: the arm's own buckets, all pods present
            pods = _pod_histograms(per_pod, where)
        else:
            pods = pod_breakdown(evidence, kind, plan.metric.failure_codes, present, where=where)
    return observation, _arm_to_json(kept), notes, pods


def _traces(
    result: QueryResult, kind: MetricKind, keys: SeriesKeys, where: str, after: float, before: float
) -> dict[Key, list[tuple[float, int]]]:
    """Each series' values strictly inside (after, before) from a subquery's matrix."""
    if result.result_type != "matrix":
        raise MetricsDataError(
            f"{where}: the in-round trace must be a range vector, got {result.result_type}",
            query=result.query,
        )
    second = "response_code" if kind is MetricKind.COUNTS else "le"
    traces: dict[Key, list[int]] = {}
    for series in result.series:
        name = keys.series(series.labels)
        if name is None or second not in series.labels:
            continue  # groups_from_result has already named such a series at the boundary
        traces[(name, series.labels[second])] = [
            (ts, _integer(value, series.labels, where))
            for ts, value in series.points
            if after < ts < before
        ]
    return traces


def _evidence_pods(
    deltas: Mapping[Key, int], present: set[str], keys: SeriesKeys
) -> tuple[dict[Key, int] | None, set[str]]:
    """The deltas keyed by the workload pod they went to, for the per-pod evidence.

    Sidecar mode: the keys as they are. Ambient mode: summed over waypoints per
    destination pod when the metrics carry one; None when they do not.
    """
    if not keys.ambient:
        return dict(deltas), present
    if keys.destination_pod_label is None:
        return None, set()
    by_pod: dict[Key, int] = {}
    for (series, second), value in deltas.items():
        pod = keys.evidence_pod(series) or ""
        by_pod[(pod, second)] = by_pod.get((pod, second), 0) + value
    return by_pod, {keys.evidence_pod(s) or "" for s in present}


def _value_observation(
    canary: CanaryConfig, plan: _Plan, result: QueryResult
) -> tuple[Observation, list[str]]:
    where = _where(canary, plan)
    if result.empty:
        return None, [f"{where}: no data"]
    if result.result_type not in ("vector", "scalar") or len(result.samples) != 1:
        count = len(result.samples) or len(result.series)
        raise MetricsDataError(
            f"{where}: a value template must return one number, got {count} "
            f"{result.result_type} element(s); aggregate it (e.g. sum(...))",
            query=result.query,
        )
    value = result.samples[0].value
    if math.isnan(value):
        return None, [f"{where}: the query returned NaN (no traffic in the window)"]
    return value, []


async def collect_round(
    client: PrometheusClient,
    canary: CanaryConfig,
    at: datetime,
    previous_snapshot: Mapping[str, Any] | None,
    *,
    templates: TemplateSet | None = None,
    bounds: Mapping[str, Sequence[float]] | None = None,
) -> tuple[RoundData, dict[str, Any] | None]:
    """Collect one round of `canary` ending at `at`; the one mechanism for every caller.

    `bounds` are the histogram bounds the judge has fixed, per metric
    (`canary.judge.judged_bounds`): those metrics then ask Prometheus only for these
    buckets and +Inf, spelled as in the previous snapshot; deltas stay exact.

    Returns the judges' `RoundData` (per arm: Counts | Histogram | float | None for
    each metric; all None in the warm-up round, when `previous_snapshot` is None) and
    the new JSON-able snapshot to store and pass to the next round. When a query
    fails the round has `error` set and the previous snapshot is returned unchanged.
    Template problems raise `TemplateError` (a configuration error) before any query.
    """
    templates = templates or load_templates(client.config.templates_dir)
    plans = _plans(canary, templates)
    at_unix = to_unix(at)
    prev_at: float | None = None
    prev_metrics: Mapping[str, Any] = {}
    if previous_snapshot:
        if previous_snapshot.get("version") != SNAPSHOT_VERSION:
            raise MetricsDataError(
                f"canary {canary.name}: stored snapshot has version "
                f"{previous_snapshot.get('version')!r}, expected {SNAPSHOT_VERSION}"
            )
        prev_at = float(previous_snapshot["at_unix"])
        prev_metrics = previous_snapshot.get("metrics") or {}
    start = datetime.fromtimestamp(prev_at, UTC) if prev_at is not None else None
    warm_up = previous_snapshot is None
    if bounds and prev_metrics:
        plans = _narrow_plans(plans, templates, prev_metrics, bounds)

    counter_plans = [p for p in plans if p.metric.kind is not MetricKind.VALUE]

    async def one(
        plan: _Plan, result: QueryResult | None, traced: QueryResult | None
    ) -> tuple[_Plan, Observation, dict[str, Any] | float | None, list, dict[str, Observation]]:
        if result is None:
            result = await client.query(plan.query, at_unix)
        notes = [f"{_where(canary, plan)}: Prometheus warning: {w}" for w in result.warnings]
        if plan.metric.kind is MetricKind.VALUE:
            value, more = _value_observation(canary, plan, result)
            return plan, (None if warm_up else value), value, notes + more, {}
        stored = prev_metrics.get(plan.metric.name)
        before = None
        if stored is not None and stored.get("kind") == plan.metric.kind.value:
            before = (stored.get("arms") or {}).get(plan.arm.value, {"series": {}})
        observation, raw, more, pods = await _counter_observation(
            client,
            canary,
            plan,
            templates,
            result,
            before,
            prev_at if before else None,
            at_unix,
            traced,
        )
        return plan, observation, raw, notes + more, pods

    # All counter snapshots of the canary in one request (see `combine_queries`), and
    # in ambient mode all their in-round traces in one more (see `traced_deltas`).
    results: dict[int, QueryResult] = {}
    traces: dict[int, QueryResult] = {}
    queries = [p.query for p in counter_plans]
    trace = (
        SeriesKeys.of(canary).ambient
        and prev_at is not None
        and at_unix - prev_at > canary.scrape_interval
        and bool(counter_plans)
    )
    try:
        if len(counter_plans) > 1 or trace:
            combined = combine_queries(queries)
            answers = await asyncio.gather(
                client.query(combined, at_unix),
                *([_trace_if_reset(client, combined, at_unix, prev_at, canary.scrape_interval)]
                  if trace and prev_at is not None else []),
            )  # fmt: skip
            parts = split_combined(answers[0], queries)
            results = {id(p): r for p, r in zip(counter_plans, parts, strict=True)}
            if trace and answers[1] is not None:
                parts = split_combined(answers[1], queries)
                traces = {id(p): r for p, r in zip(counter_plans, parts, strict=True)}
    except MetricsError as exc:
        outcomes: list[Any] = [exc]
    else:
        outcomes = await asyncio.gather(
            *(one(plan, results.get(id(plan)), traces.get(id(plan))) for plan in plans),
            return_exceptions=True,
        )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        for error in errors:
            if not isinstance(error, MetricsError):
                raise error
        message = "; ".join(dict.fromkeys(str(e) for e in errors))
        log.warning("canary %s: round at %s failed: %s", canary.name, at.isoformat(), message)
        data = RoundData(canary={}, baseline={}, start=start, end=at, error=message)
        return data, (dict(previous_snapshot) if previous_snapshot is not None else None)

    sides: dict[Arm, dict[str, Observation]] = {Arm.CANARY: {}, Arm.BASELINE: {}}
    metrics: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    pods: dict[str, dict[str, dict[str, Observation]]] = {}
    for outcome in outcomes:
        plan, observation, raw, more, by_pod = outcome  # type: ignore[misc]
        sides[plan.arm][plan.metric.name] = observation
        if by_pod:
            pods.setdefault(plan.arm.value, {})[plan.metric.name] = by_pod
        entry = metrics.setdefault(
            plan.metric.name, {"kind": plan.metric.kind.value, "query": plan.template}
        )
        if plan.metric.kind is MetricKind.VALUE:
            value = raw if raw is None or math.isfinite(raw) else str(raw)  # type: ignore[arg-type]
            entry.setdefault("value", {})[plan.arm.value] = value
        else:
            entry.setdefault("arms", {})[plan.arm.value] = raw
        notes.extend(more)
    for note in notes:
        log.info("%s", note)
    snapshot = {
        "version": SNAPSHOT_VERSION,
        "at": at.astimezone(UTC).isoformat(),
        "at_unix": at_unix,
        "metrics": metrics,
        "notes": notes,
    }
    data = RoundData(
        canary=sides[Arm.CANARY], baseline=sides[Arm.BASELINE], start=start, end=at, pods=pods
    )
    return data, snapshot
