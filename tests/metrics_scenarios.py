"""Deterministic Istio traffic scenarios written as OpenMetrics for backfilling.

Each scenario lives in its own namespace, sampled every 15 s from T0 for 30 minutes,
with round boundaries every 2 minutes from T0+10m. Besides the samples it computes
the *expected* per-round deltas independently of canary's algorithm: the requests a
pod served are attributed to the round in which Prometheus first shows them (the
first tick at which the pod is scraped again); requests shown at or before the
warm-up boundary belong to no round.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_harness import ENVOY_BUCKETS, ArmTraffic, OpenMetricsWriter

T0 = 1767225600  # 2026-01-01T00:00:00Z, on a 2-hour block boundary
TICK = 15
TICKS = 120  # 30 minutes
BOUNDARIES = [T0 + 600 + 120 * k for k in range(9)]  # warm-up at +10m, last at +26m
ROUND_SECONDS = 120


@dataclass
class Expected:
    """Per round (1-based index - 1), per arm: requests by code and latency buckets."""

    codes: list[dict[str, dict[str, int]]]
    buckets: list[dict[str, list[int]]]

    def counts(self, index: int, arm: str, failure: str = "5..") -> tuple[int, int]:
        codes = self.codes[index][arm]
        failed = sum(v for c, v in codes.items() if re.fullmatch(failure, c))
        return sum(codes.values()), failed


@dataclass
class Scenario:
    namespace: str
    arms: dict[str, ArmTraffic]
    # tick -> actions run before that tick's requests are served
    events: dict[int, list[Callable[[Scenario], None]]] = field(default_factory=dict)
    # (arm, pod) -> set of ticks at which the pod is not scraped
    hidden: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    ticks: list[dict[str, dict[str, dict]]] = field(default_factory=list)  # per tick log

    def at(self, tick: int, action: Callable[[Scenario], None]) -> Scenario:
        self.events.setdefault(tick, []).append(action)
        return self

    def hide(self, arm: str, pod: str, ticks: range) -> Scenario:
        self.hidden.setdefault((arm, pod), set()).update(ticks)
        return self

    def generate(self, writer: OpenMetricsWriter) -> Expected:
        rounds = len(BOUNDARIES) - 1
        codes = [{a: {} for a in self.arms} for _ in range(rounds)]
        buckets = [{a: [0] * len(ENVOY_BUCKETS) for a in self.arms} for _ in range(rounds)]
        pending: dict[tuple[str, str], tuple[dict[str, int], list[int]]] = {}
        for tick in range(1, TICKS + 1):
            ts = T0 + TICK * tick
            for action in self.events.get(tick, []):
                action(self)
            log: dict[str, dict[str, dict]] = {}
            for name, arm in self.arms.items():
                before = {
                    pod: (dict(arm.counters[pod].requests), _hist(arm.counters[pod]))
                    for pod in arm.pods
                }
                arm.advance(TICK)
                log[name] = {}
                for pod in arm.pods:
                    old_codes, old_hist = before[pod]
                    now = arm.counters[pod]
                    served_codes = {
                        c: v - old_codes.get(c, 0)
                        for c, v in now.requests.items()
                        if v - old_codes.get(c, 0)
                    }
                    served_hist = [b - a for a, b in zip(old_hist, _hist(now), strict=True)]
                    log[name][pod] = {"codes": served_codes, "hist": served_hist}
                    p_codes, p_hist = pending.setdefault((name, pod), ({}, [0] * len(old_hist)))
                    for c, v in served_codes.items():
                        p_codes[c] = p_codes.get(c, 0) + v
                    for i, v in enumerate(served_hist):
                        p_hist[i] += v
                    if tick in self.hidden.get((name, pod), ()):
                        continue
                    writer.add_all(now.samples(), ts)
                    index = _round_of(ts)
                    if index is not None:
                        for c, v in p_codes.items():
                            codes[index][name][c] = codes[index][name].get(c, 0) + v
                        for i, v in enumerate(p_hist):
                            buckets[index][name][i] += v
                    pending[(name, pod)] = ({}, [0] * len(old_hist))
            self.ticks.append(log)
        return Expected(codes, buckets)

    def window_totals(self, end: float, window: float, arm: str) -> tuple[dict, list[int]]:
        """Requests (by code) and bucket increments that rate() sees over the window:
        served after the first sample in [end - window, end] (Prometheus 2.x includes
        both ends of a range) up to `end`."""
        inside = [i for i in range(len(self.ticks)) if end - window <= T0 + TICK * (i + 1) <= end]
        codes: dict[str, int] = {}
        hist = [0] * len(ENVOY_BUCKETS)
        for i in inside[1:]:  # increase from the first sample in the window to the last
            for pod_log in self.ticks[i][arm].values():
                for c, v in pod_log["codes"].items():
                    codes[c] = codes.get(c, 0) + v
                for j, v in enumerate(pod_log["hist"]):
                    hist[j] += v
        return codes, hist


def _hist(counters) -> list[int]:  # type: ignore[no-untyped-def]
    """The pod's latency buckets summed over response codes."""
    total = [0] * len(ENVOY_BUCKETS)
    for buckets in counters.buckets.values():
        total = [a + b for a, b in zip(total, buckets, strict=True)]
    return total


def _round_of(ts: float) -> int | None:
    for k in range(1, len(BOUNDARIES)):
        if BOUNDARIES[k - 1] < ts <= BOUNDARIES[k]:
            return k - 1
    return None


def histogram_quantile(q: float, bounds: tuple[float, ...], cumulative: list[int]) -> float:
    """Prometheus' bucketQuantile (promql/quantile.go): linear interpolation inside the
    bucket holding rank q*total; the +Inf bucket answers the highest finite bound."""
    total = cumulative[-1]
    rank = q * total
    index = next(i for i, c in enumerate(cumulative) if c >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    start = 0.0 if index == 0 else bounds[index - 1]
    below = 0 if index == 0 else cumulative[index - 1]
    return start + (bounds[index] - start) * (rank - below) / (cumulative[index] - below)


# --------------------------------------------------------------------------- the scenarios


def _arm(ns: str, workload: str, pods: list[str], revision: str, **traffic) -> ArmTraffic:  # type: ignore[no-untyped-def]
    return ArmTraffic(ns, workload, list(pods), revision, **traffic)


def worse_canary() -> Scenario:
    """A canary with 6% 503s and ~3x slower latency; the baseline has 1% 503s and a
    burst of 404s (not failures)."""
    ns = "worse"
    scenario = Scenario(
        ns,
        {
            "canary": _arm(ns, "app-canary", ["app-canary-0", "app-canary-1", "app-canary-2"],
                           "v2", rate=30.0, error_ratio=0.06, latency_ms=80.0),
            "baseline": _arm(ns, "app-primary", ["app-primary-0", "app-primary-1", "app-primary-2"],
                             "v1", rate=30.0, error_ratio=0.01, latency_ms=25.0),
        },
    )  # fmt: skip

    def codes_404(s: Scenario) -> None:
        s.arms["baseline"].error_code = "404"
        s.arms["baseline"].error_ratio = 0.05

    def codes_503(s: Scenario) -> None:
        s.arms["baseline"].error_code = "503"
        s.arms["baseline"].error_ratio = 0.01

    return scenario.at(50, codes_404).at(58, codes_503)


def counter_resets() -> Scenario:
    """Sidecar restarts inside the same pod: counters drop to zero and climb again."""
    ns = "resets"
    scenario = Scenario(
        ns,
        {
            "canary": _arm(ns, "app-canary", ["c-0", "c-1"], "v2", rate=20.0,
                           error_ratio=0.02, latency_ms=40.0),
            "baseline": _arm(ns, "app-primary", ["b-0", "b-1"], "v1", rate=20.0,
                             error_ratio=0.02, latency_ms=40.0),
        },
    )  # fmt: skip
    scenario.at(57, lambda s: s.arms["canary"].counters["c-1"].reset())  # just after +14m
    scenario.at(73, lambda s: s.arms["baseline"].counters["b-0"].reset())  # after +18m
    scenario.at(74, lambda s: setattr(s.arms["baseline"], "error_ratio", 0.1))
    return scenario


def pod_restart() -> Scenario:
    """Kubernetes replaces a canary pod (new name) and scales the baseline up."""
    ns = "restart"
    scenario = Scenario(
        ns,
        {
            "canary": _arm(ns, "app-canary", ["c-a", "c-b"], "v2", rate=20.0,
                           error_ratio=0.05, latency_ms=30.0),
            "baseline": _arm(ns, "app-primary", ["b-a", "b-b"], "v1", rate=20.0,
                             error_ratio=0.0, latency_ms=30.0),
        },
    )  # fmt: skip

    def replace(s: Scenario) -> None:
        s.arms["canary"].remove_pod("c-a")
        s.arms["canary"].add_pod("c-a2")

    scenario.at(62, replace)  # +15m30s
    scenario.at(85, lambda s: s.arms["baseline"].add_pod("b-c"))  # +21m15s
    return scenario


def missing_series() -> Scenario:
    """Scrape gaps: a canary pod unseen for 8 minutes across boundaries; a baseline pod
    unseen from +3m to +12m, i.e. missing at the warm-up boundary although it served
    traffic before (its earlier value must be found, not counted again)."""
    ns = "gaps"
    scenario = Scenario(
        ns,
        {
            "canary": _arm(ns, "app-canary", ["c-0", "c-1"], "v2", rate=20.0,
                           error_ratio=0.03, latency_ms=60.0),
            "baseline": _arm(ns, "app-primary", ["b-0", "b-1"], "v1", rate=20.0,
                             error_ratio=0.01, latency_ms=20.0),
        },
    )  # fmt: skip
    scenario.hide("canary", "c-1", range(56, 88))  # +14m .. +21m45s
    scenario.hide("baseline", "b-1", range(13, 49))  # +3m15s .. +12m
    return scenario


HOSTILE_CANARY = 'evil"} or vector(1) #\\\n'
HOSTILE_BASELINE = 'base\\"}{le="'


def hostile_labels() -> Scenario:
    """Label values with quotes, backslashes, newlines and `"}`; pods named like regexes.
    An impostor workload named like a prefix of the canary's must never be counted."""
    ns = "hostile"
    canary_pods = ['p"0}', "p\\1", "p\n2"]
    scenario = Scenario(
        ns,
        {
            "canary": _arm(ns, HOSTILE_CANARY, canary_pods, "v2", rate=10.0,
                           error_ratio=0.1, latency_ms=30.0),
            "baseline": _arm(ns, HOSTILE_BASELINE, ["q.*|x", "q$"], "v1", rate=10.0,
                             error_ratio=0.0, latency_ms=30.0),
            "impostor": _arm(ns, "evil", ["p.*"], "v0", rate=50.0, error_ratio=0.5),
        },
    )  # fmt: skip
    scenario.at(70, lambda s: s.arms["canary"].add_pod('p"}\\.*'))
    return scenario


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "worse": worse_canary,
    "resets": counter_resets,
    "restart": pod_restart,
    "gaps": missing_series,
    "hostile": hostile_labels,
}


def ambient_twins() -> tuple[Scenario, Scenario, Scenario]:
    """The same traffic three times: sidecar-shaped (namespace `twin-sidecar`, the
    workload pods report), ambient-shaped (`twin-ambient`, two then three waypoint pods
    report ``reporter="waypoint"`` for both arms), and ambient-shaped with a
    destination pod label (`twin-ambient-pods`, each workload pod reached through one
    waypoint pod). A worse canary (6% 503s, slower) against a baseline with 1% 503s.
    In all three: the second reporter of every arm restarts at +14m15s (in ambient
    mode: one waypoint restart resets both arms' series), the first is not scraped
    from +15m30s to +17m30s (across a boundary), and a third joins at +21m15s (a
    waypoint scale-out). Requests are spread round-robin over the reporters, so every
    round's counts are the same in all shapes."""

    def arms(
        ns: str, pods: dict[str, list[str]], reporter: str, via: dict[str, str] | None = None
    ) -> dict[str, ArmTraffic]:
        return {
            "canary": ArmTraffic(ns, "app-canary", pods["canary"], "v2", rate=30.0,
                                 error_ratio=0.06, latency_ms=80.0, reporter=reporter, via=via),
            "baseline": ArmTraffic(ns, "app-primary", pods["baseline"], "v1", rate=30.0,
                                   error_ratio=0.01, latency_ms=25.0, reporter=reporter, via=via),
        }  # fmt: skip

    workload_pods = {"canary": ["c-0", "c-1"], "baseline": ["b-0", "b-1"]}
    waypoints = ["waypoint-0", "waypoint-1"]
    via = {f"{a}-{i}": f"waypoint-{i}" for a in "cb" for i in range(3)}
    sidecar = Scenario("twin-sidecar", arms("twin-sidecar", workload_pods, "destination"))
    ambient = Scenario(
        "twin-ambient",
        arms("twin-ambient", {"canary": list(waypoints), "baseline": list(waypoints)}, "waypoint"),
    )
    ambient_pods = Scenario(
        "twin-ambient-pods",
        arms(
            "twin-ambient-pods",
            {arm: list(pods) for arm, pods in workload_pods.items()},
            "waypoint",
            via,
        ),
    )

    def restart(pods: dict[str, str]) -> Callable[[Scenario], None]:
        return lambda s: [s.arms[arm].counters[pod].reset() for arm, pod in pods.items()]  # type: ignore[func-returns-value]

    def scale_out(pods: dict[str, str]) -> Callable[[Scenario], None]:
        return lambda s: [s.arms[arm].add_pod(pod) for arm, pod in pods.items()]  # type: ignore[func-returns-value]

    # waypoint-1 carries c-1 and b-1, waypoint-2 (the scale-out) c-2 and b-2
    for scenario in (sidecar, ambient_pods):
        scenario.at(57, restart({"canary": "c-1", "baseline": "b-1"}))
        scenario.at(85, scale_out({"canary": "c-2", "baseline": "b-2"}))
        for arm, pod in (("canary", "c-0"), ("baseline", "b-0")):
            scenario.hide(arm, pod, range(62, 70))
    ambient.at(57, restart({"canary": "waypoint-1", "baseline": "waypoint-1"}))
    ambient.at(85, scale_out({"canary": "waypoint-2", "baseline": "waypoint-2"}))
    for arm in ("canary", "baseline"):
        ambient.hide(arm, "waypoint-0", range(62, 70))
    return sidecar, ambient, ambient_pods


def iso(ts: float) -> str:
    """A scenario timestamp as the CLI takes it (``2026-01-01T00:10:00Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def write_config(path, url: str, namespace: str, judge: str = "sequential") -> str:  # type: ignore[no-untyped-def]
    """A configuration file for `canary analyze` of one scenario's namespace."""
    path.write_text(
        f"""
[prometheus]
url = "{url}"

[[canary]]
name = "shop"
namespace = "{namespace}"
interval = "2m"
judge = "{judge}"
[canary.traffic]
virtual_service = "shop"
canary = {{ host = "shop-canary" }}
stable = {{ host = "shop-primary" }}
[canary.arms.canary]
match = {{ destination_workload = "app-canary" }}
[canary.arms.baseline]
match = {{ destination_workload = "app-primary" }}
"""
    )
    return str(path)
