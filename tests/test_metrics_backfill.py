"""Counter deltas and threshold queries against a real Prometheus over backfilled data.

The scenarios (tests/metrics_scenarios.py) generate Istio counters as OpenMetrics,
promtool loads them, and one Prometheus serves them for the whole session.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from metrics_scenarios import (
    BOUNDARIES,
    HOSTILE_BASELINE,
    HOSTILE_CANARY,
    ROUND_SECONDS,
    Expected,
    histogram_quantile,
    iso,
    write_config,
)
from prometheus_harness import ENVOY_BUCKETS

from canary.config import CanaryConfig, PrometheusConfig, parse_config
from canary.metrics.collect import collect_round, raw_snapshots
from canary.metrics.prometheus import PrometheusClient
from canary.metrics.queries import promql_string, regex_literal
from canary.model import Arm, Counts, Histogram


def canary_config(namespace: str, canary: str, baseline: str, **extra: Any) -> CanaryConfig:
    raw = {
        "name": "shop",
        "namespace": namespace,
        "interval": ROUND_SECONDS,
        "traffic": {"virtual_service": "vs", "canary": {"host": "a"}, "stable": {"host": "b"}},
        "arms": {
            "canary": {"match": {"destination_workload": canary}},
            "baseline": {"match": {"destination_workload": baseline}},
        },
        **extra,
    }
    return parse_config({"canary": [raw]}).canary[0]


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def collect_all(url: str, canary: CanaryConfig) -> list:
    rounds = []
    async with PrometheusClient(PrometheusConfig(url=url)) as client:
        snapshot = None
        for boundary in BOUNDARIES:
            data, snapshot = await collect_round(client, canary, at(boundary), snapshot)
            assert data.error is None, data.error
            rounds.append((data, snapshot))
    return rounds


def expected_histogram(expected: Expected, index: int, arm: str) -> Histogram:
    return Histogram(bounds=ENVOY_BUCKETS, buckets=tuple(expected.buckets[index][arm]))


@pytest.mark.parametrize(
    ("scenario", "canary", "baseline"),
    [
        ("worse", "app-canary", "app-primary"),
        ("resets", "app-canary", "app-primary"),
        ("restart", "app-canary", "app-primary"),
        ("gaps", "app-canary", "app-primary"),
        ("hostile", HOSTILE_CANARY, HOSTILE_BASELINE),
    ],
)
def test_deltas_equal_the_generated_counts_exactly(
    backfilled_scenarios, scenario, canary, baseline
) -> None:
    server, scenarios = backfilled_scenarios
    _, expected = scenarios[scenario]
    config = canary_config(scenario, canary, baseline)
    rounds = asyncio.run(collect_all(server.url, config))

    warmup, _ = rounds[0]
    assert all(v is None for v in (*warmup.canary.values(), *warmup.baseline.values()))
    for index, (data, _) in enumerate(rounds[1:]):
        assert data.start == at(BOUNDARIES[index]) and data.end == at(BOUNDARIES[index + 1])
        for arm in ("canary", "baseline"):
            total, failed = expected.counts(index, arm)
            observed = data.arm(Arm(arm))
            assert observed["errors"] == Counts(total, failed), (scenario, index + 1, arm)
            assert observed["latency"] == expected_histogram(expected, index, arm), (
                scenario,
                index + 1,
                arm,
            )
            # The per-pod breakdown sums to the arm's observation, pod by pod.
            pods = data.pod_observations(arm, "errors")
            assert pods and all(isinstance(c, Counts) for c in pods.values())
            assert sum(c.total for c in pods.values()) == total
            assert sum(c.failed for c in pods.values()) == failed
            hist = data.pod_observations(arm, "latency")
            summed = [sum(h.buckets[i] for h in hist.values()) for i in range(len(ENVOY_BUCKETS))]
            assert tuple(summed) == expected_histogram(expected, index, arm).buckets
    # every round carried traffic: the generated scenario is not trivially empty
    assert all(d.canary["errors"].total > 0 for d, _ in rounds[1:])


JUDGED = (25.0, 100.0, 1000.0)  # bounds a judge fixed at its warm-up


@pytest.mark.parametrize(
    ("scenario", "canary", "baseline"),
    [
        ("resets", "app-canary", "app-primary"),
        ("restart", "app-canary", "app-primary"),
        ("gaps", "app-canary", "app-primary"),
        ("hostile", HOSTILE_CANARY, HOSTILE_BASELINE),
    ],
)
def test_judged_buckets_only_after_the_judge_fixed_them_deltas_still_exact(
    backfilled_scenarios, scenario, canary, baseline
) -> None:
    """With `bounds`, a histogram asks only for those buckets and +Inf; every delta
    (resets, new and vanished pods) equals the generated counts at those bounds."""
    server, scenarios = backfilled_scenarios
    _, expected = scenarios[scenario]
    config = canary_config(scenario, canary, baseline)
    keep = [i for i, b in enumerate(ENVOY_BUCKETS) if b in JUDGED or math.isinf(b)]

    async def run() -> list:
        rounds = []
        async with PrometheusClient(PrometheusConfig(url=server.url)) as client:
            snapshot = None
            for index, boundary in enumerate(BOUNDARIES):
                bounds = {"latency": list(JUDGED)} if index >= 2 else None
                data, snapshot = await collect_round(
                    client, config, at(boundary), snapshot, bounds=bounds
                )
                assert data.error is None, data.error
                rounds.append((data, snapshot))
        return rounds

    rounds = asyncio.run(run())
    for index, (data, snapshot) in enumerate(rounds[1:], start=1):
        narrowed = index >= 2
        latency = snapshot["metrics"]["latency"]["arms"]
        les = {le for arm in latency.values() for pod in arm["pods"].values() for le in pod}
        assert len(les) == (4 if narrowed else len(ENVOY_BUCKETS)), (scenario, index)
        for arm in ("canary", "baseline"):
            total, failed = expected.counts(index - 1, arm)
            observed = data.arm(Arm(arm))
            assert observed["errors"] == Counts(total, failed), (scenario, index, arm)
            full = expected_histogram(expected, index - 1, arm)
            want = (
                Histogram(
                    bounds=tuple(full.bounds[i] for i in keep),
                    buckets=tuple(full.buckets[i] for i in keep),
                )
                if narrowed
                else full
            )
            assert observed["latency"] == want, (scenario, index, arm)
            hist = data.pod_observations(arm, "latency")
            assert sum(h.total for h in hist.values()) == total


def test_worse_canary_shows_more_failures_and_slower_latency(backfilled_scenarios) -> None:
    server, _ = backfilled_scenarios
    rounds = asyncio.run(
        collect_all(server.url, canary_config("worse", "app-canary", "app-primary"))
    )
    canary = sum(d.canary["errors"].failed for d, _ in rounds[1:])
    baseline = sum(d.baseline["errors"].failed for d, _ in rounds[1:])
    assert canary > 3 * baseline
    slow = sum(d.canary["latency"].exceeding(100.0).failed for d, _ in rounds[1:])
    slow_base = sum(d.baseline["latency"].exceeding(100.0).failed for d, _ in rounds[1:])
    assert slow > 0 and slow_base == 0


def test_404s_count_as_requests_but_not_as_failures(backfilled_scenarios) -> None:
    server, scenarios = backfilled_scenarios
    _, expected = scenarios["worse"]
    rounds = asyncio.run(
        collect_all(server.url, canary_config("worse", "app-canary", "app-primary"))
    )
    with_404 = [i for i in range(len(expected.codes)) if expected.codes[i]["baseline"].get("404")]
    assert with_404, "the scenario has a burst of 404s"
    for i in with_404:
        data, _ = rounds[i + 1]
        codes = expected.codes[i]["baseline"]
        assert data.baseline["errors"].failed == codes.get("503", 0)
        assert data.baseline["errors"].total == sum(codes.values())


def test_snapshot_is_json_and_names_each_series(backfilled_scenarios) -> None:
    import json

    server, _ = backfilled_scenarios
    rounds = asyncio.run(
        collect_all(server.url, canary_config("restart", "app-canary", "app-primary"))
    )
    _, snapshot = rounds[-1]
    text = json.dumps(snapshot, allow_nan=False)
    assert json.loads(text) == snapshot
    raw = raw_snapshots(snapshot)
    series = raw["errors"]["canary"]["pods"]
    pods = set(series)
    # the replaced pod is carried with its last value next to its successor
    assert {"c-a", "c-a2", "c-b"} <= pods
    assert raw["latency"]["baseline"]["query"] == "istio-latency"


def test_a_failed_round_keeps_the_previous_snapshot_and_loses_nothing(backfilled_scenarios) -> None:
    server, scenarios = backfilled_scenarios
    _, expected = scenarios["worse"]
    config = canary_config("worse", "app-canary", "app-primary")

    async def run() -> tuple:
        async with PrometheusClient(PrometheusConfig(url=server.url)) as good:
            _, snapshot = await collect_round(good, config, at(BOUNDARIES[0]), None)
            bad_config = PrometheusConfig(url="http://127.0.0.1:9", retries=0, timeout=2)
            async with PrometheusClient(bad_config) as bad:
                failed, kept = await collect_round(bad, config, at(BOUNDARIES[1]), snapshot)
            data, _ = await collect_round(good, config, at(BOUNDARIES[2]), kept)
            return failed, kept, snapshot, data

    failed, kept, snapshot, data = asyncio.run(run())
    assert failed.error and "unreachable" in failed.error
    assert kept == snapshot
    # the next round covers both intervals exactly
    t0, f0 = expected.counts(0, "canary")
    t1, f1 = expected.counts(1, "canary")
    assert data.canary["errors"] == Counts(t0 + t1, f0 + f1)
    assert data.start == at(BOUNDARIES[0])


class PartialAnswers:
    """A proxy in front of Prometheus that, while `drop` is set, removes the series
    with that `le` of the canary pods from query answers (a partial answer, as a
    federated or remote-read Prometheus or a truncating proxy can give)."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import json
        import threading
        from urllib.parse import parse_qs, urlsplit

        import httpx

        self.drop: str | None = None
        self.only_at: float | None = None  # drop only from queries at this time
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                response = httpx.request(
                    self.command,
                    upstream + self.path,
                    content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                    timeout=30,
                )
                data = response.content
                form = parse_qs(urlsplit(self.path).query) | parse_qs((body or b"").decode())
                when = float(form.get("time", ["nan"])[0])
                if (
                    proxy.drop is not None
                    and urlsplit(self.path).path == "/api/v1/query"
                    and (proxy.only_at is None or when == proxy.only_at)
                ):
                    answer = json.loads(data)
                    answer["data"]["result"] = [
                        series
                        for series in answer["data"]["result"]
                        if not (
                            series["metric"].get("le") == proxy.drop
                            and any(v.startswith("app-canary-") for v in series["metric"].values())
                        )
                    ]
                    data = json.dumps(answer).encode()
                self.send_response(response.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _forward
            do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def partial(backfilled_scenarios) -> Iterator[PartialAnswers]:
    proxy = PartialAnswers(backfilled_scenarios[0].url)
    yield proxy
    proxy.close()


def test_a_partial_histogram_answer_fails_the_round_and_the_next_answer_recovers(
    backfilled_scenarios, partial
) -> None:
    _, scenarios = backfilled_scenarios
    _, expected = scenarios["worse"]
    config = canary_config("worse", "app-canary", "app-primary")

    async def run() -> list:
        async with PrometheusClient(PrometheusConfig(url=partial.url)) as client:
            _, snapshot = await collect_round(client, config, at(BOUNDARIES[0]), None)
            partial.drop = "50"  # every canary pod lacks one of its buckets
            failed, kept = await collect_round(client, config, at(BOUNDARIES[1]), snapshot)
            partial.drop = None
            data, after = await collect_round(client, config, at(BOUNDARIES[2]), kept)
            later, _ = await collect_round(client, config, at(BOUNDARIES[3]), after)
            return [snapshot, failed, kept, data, later]

    snapshot, failed, kept, data, later = asyncio.run(run())
    assert failed.error and "incomplete answer" in failed.error and "le=50" in failed.error
    assert "arm canary" in failed.error
    assert kept == snapshot  # the partial answer did not touch the stored snapshot
    assert data.error is None, data.error
    # the next complete answer covers both intervals exactly, and so on
    t0, f0 = expected.counts(0, "canary")
    t1, f1 = expected.counts(1, "canary")
    assert data.canary["errors"] == Counts(t0 + t1, f0 + f1)
    first, second = expected.buckets[0]["canary"], expected.buckets[1]["canary"]
    both = [a + b for a, b in zip(first, second, strict=True)]
    assert data.canary["latency"] == Histogram(bounds=ENVOY_BUCKETS, buckets=tuple(both))
    assert later.error is None and later.canary["latency"] == expected_histogram(
        expected, 2, "canary"
    )


def test_a_partial_warm_up_answer_is_completed_from_the_earlier_buckets(
    backfilled_scenarios, partial
) -> None:
    _, scenarios = backfilled_scenarios
    _, expected = scenarios["worse"]
    config = canary_config("worse", "app-canary", "app-primary")

    async def run() -> list:
        async with PrometheusClient(PrometheusConfig(url=partial.url)) as client:
            partial.drop = "50"
            _, snapshot = await collect_round(client, config, at(BOUNDARIES[0]), None)
            partial.drop = None
            data, after = await collect_round(client, config, at(BOUNDARIES[1]), snapshot)
            later, _ = await collect_round(client, config, at(BOUNDARIES[2]), after)
            return [data, later]

    data, later = asyncio.run(run())
    assert data.error is None, data.error
    assert data.canary["latency"] == expected_histogram(expected, 0, "canary")
    assert later.error is None, later.error
    assert later.canary["latency"] == expected_histogram(expected, 1, "canary")


def test_analyze_through_a_partial_answer_records_an_error_round_and_recovers(
    backfilled_scenarios, partial, migrated_url: str, tmp_path, capsys
) -> None:
    import json

    from canary.cli import main

    _, scenarios = backfilled_scenarios
    _, expected = scenarios["worse"]
    partial.drop, partial.only_at = "50", float(BOUNDARIES[1])
    config = write_config(tmp_path / "canary.toml", partial.url, "worse")
    argv = ["--config", config, "--database-url", migrated_url, "analyze", "--canary", "shop"]
    window = ["--from", iso(BOUNDARIES[0]), "--to", iso(BOUNDARIES[-1]), "--json"]

    assert main([*argv, *window]) == 1
    rounds = json.loads(capsys.readouterr().out)["rounds"]
    assert "incomplete answer" in rounds[1]["error"]
    assert rounds[2]["error"] is None
    t0, f0 = expected.counts(0, "canary")
    t1, f1 = expected.counts(1, "canary")
    assert rounds[2]["observations"]["canary"]["errors"] == {"total": t0 + t1, "failed": f0 + f1}


# --------------------------------------------------------------------------- threshold queries


def value_config(query: str) -> CanaryConfig:
    return canary_config(
        "worse",
        "app-canary",
        "app-primary",
        judge="threshold",
        metrics=[{"name": "m", "kind": "value", "query": query}],
    )


def collect_values(url: str, query: str, boundary: float) -> tuple[float, float]:
    async def run() -> tuple[float, float]:
        async with PrometheusClient(PrometheusConfig(url=url)) as client:
            config = value_config(query)
            _, snapshot = await collect_round(client, config, at(boundary - 120), None)
            data, _ = await collect_round(client, config, at(boundary), snapshot)
            assert data.error is None, data.error
            return data.canary["m"], data.baseline["m"]

    return asyncio.run(run())


BOUNDARY = BOUNDARIES[5]  # its 2-minute window is after the 404 burst, rates steady


def test_success_rate_is_the_generated_ratio(backfilled_scenarios) -> None:
    server, scenarios = backfilled_scenarios
    scenario, _ = scenarios["worse"]
    canary, baseline = collect_values(server.url, "success-rate", BOUNDARY)
    for arm, value in (("canary", canary), ("baseline", baseline)):
        codes, _ = scenario.window_totals(BOUNDARY, ROUND_SECONDS, arm)
        expected = 1 - codes.get("503", 0) / sum(codes.values())
        assert value == pytest.approx(expected, rel=1e-9)
    assert canary == pytest.approx(0.94, abs=0.002)
    assert baseline == pytest.approx(0.99, abs=0.002)


def test_average_latency_is_the_generated_mean(backfilled_scenarios) -> None:
    server, _ = backfilled_scenarios
    canary, baseline = collect_values(server.url, "latency-avg", BOUNDARY)
    # LATENCY_SPREAD averages to 1.18 x the configured latency, for every request cycle of 10
    assert canary == pytest.approx(80.0 * 1.18, rel=1e-9)
    assert baseline == pytest.approx(25.0 * 1.18, rel=1e-9)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_latency_quantiles_follow_histogram_quantile(backfilled_scenarios, q: float) -> None:
    server, scenarios = backfilled_scenarios
    scenario, _ = scenarios["worse"]
    canary, baseline = collect_values(server.url, f"latency-p{round(q * 100)}", BOUNDARY)
    for arm, value in (("canary", canary), ("baseline", baseline)):
        _, hist = scenario.window_totals(BOUNDARY, ROUND_SECONDS, arm)
        assert value == pytest.approx(histogram_quantile(q, ENVOY_BUCKETS, hist), rel=1e-9)
    assert canary > baseline


def test_value_metric_without_traffic_is_no_data(backfilled_scenarios) -> None:
    server, _ = backfilled_scenarios
    config = canary_config(
        "nowhere",
        "x",
        "y",
        judge="threshold",
        metrics=[{"name": "m", "kind": "value", "query": "success-rate"}],
    )

    async def run():  # type: ignore[no-untyped-def]
        async with PrometheusClient(PrometheusConfig(url=server.url)) as client:
            _, snapshot = await collect_round(client, config, at(BOUNDARIES[0]), None)
            return await collect_round(client, config, at(BOUNDARIES[1]), snapshot)

    data, snapshot = asyncio.run(run())
    assert data.error is None
    assert data.canary == {"m": None} and data.baseline == {"m": None}
    assert any("no data" in note for note in snapshot["notes"])


def test_counts_metric_without_series_is_no_data(backfilled_scenarios) -> None:
    server, _ = backfilled_scenarios
    config = canary_config("nowhere", "x", "y")

    async def run():  # type: ignore[no-untyped-def]
        async with PrometheusClient(PrometheusConfig(url=server.url)) as client:
            _, snapshot = await collect_round(client, config, at(BOUNDARIES[0]), None)
            return await collect_round(client, config, at(BOUNDARIES[1]), snapshot)

    data, _ = asyncio.run(run())
    assert data.error is None
    assert data.canary == {"errors": None, "latency": None}


# --------------------------------------------------------------------------- escaping


def test_hostile_pod_names_match_only_themselves_as_regex(backfilled_scenarios) -> None:
    server, _ = backfilled_scenarios
    pods = ['p"0}', "p\\1", "p\n2", 'p"}\\.*', "q.*|x", "q$", "p.*"]
    for pod in pods:
        exact = server.query(
            f"count(istio_requests_total{{pod={promql_string(pod)}}})", BOUNDARIES[-1]
        )
        regex = server.query(
            f"count(istio_requests_total{{pod=~{promql_string(regex_literal(pod))}}})",
            BOUNDARIES[-1],
        )
        assert exact and regex, pod
        assert exact[0]["value"][1] == regex[0]["value"][1], pod
    # the impostor workload ("evil", a prefix of the canary's name) is separate
    impostor = server.query(
        'sum(istio_requests_total{destination_workload="evil"})', BOUNDARIES[-1]
    )
    assert float(impostor[0]["value"][1]) > 0


def test_hostile_label_values_select_exactly_their_series(backfilled_scenarios) -> None:
    server, scenarios = backfilled_scenarios
    scenario, _ = scenarios["hostile"]
    config = canary_config("hostile", HOSTILE_CANARY, HOSTILE_BASELINE)
    rounds = asyncio.run(collect_all(server.url, config))
    served = sum(d.canary["errors"].total for d, _ in rounds[1:])
    impostor = scenario.arms["impostor"].served
    assert served > 0 and impostor > 0
    _, snapshot = rounds[-1]
    pods = set(snapshot["metrics"]["errors"]["arms"]["canary"]["pods"])
    assert pods == {'p"0}', "p\\1", "p\n2", 'p"}\\.*'}  # the impostor's pod "p.*" is not there
    assert math.isfinite(served)


# --------------------------------------------------------------------------- canary analyze


def test_analyze_judges_a_past_window_and_stores_it(
    backfilled_scenarios, migrated_url: str, tmp_path, capsys
) -> None:
    import json

    from canary.cli import main
    from canary.store.analyses import load_analysis_full
    from canary.store.database import connect, sessions

    server, scenarios = backfilled_scenarios
    _, expected = scenarios["worse"]
    config = write_config(tmp_path / "canary.toml", server.url, "worse")
    argv = ["--config", config, "--database-url", migrated_url, "analyze", "--canary", "shop"]
    window = ["--from", iso(BOUNDARIES[0]), "--to", iso(BOUNDARIES[-1])]

    code = main([*argv, *window, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["verdict"] == "fail"
    assert set(out) >= {"analysis_id", "verdict", "round", "rounds"}
    assert out["rounds"][0]["warmup"] and out["rounds"][0]["index"] == 0
    assert out["round"] == out["rounds"][-1]["index"]  # stops at the verdict
    first = out["rounds"][1]
    total, failed = expected.counts(0, "canary")
    assert first["observations"]["canary"]["errors"] == {"total": total, "failed": failed}
    assert first["end"] == at(BOUNDARIES[1]).isoformat()

    factory = sessions(connect(migrated_url))
    with factory() as session:
        stored = load_analysis_full(session, out["analysis_id"])
        assert stored.source == "analyze" and stored.status == "completed"
        assert stored.verdict == "fail" and stored.started_at == at(BOUNDARIES[0])
        assert [r.index for r in stored.rounds] == [r["index"] for r in out["rounds"]]
        observation = next(
            o for o in stored.rounds[1].observations if o.metric == "errors" and o.arm == "canary"
        )
        pods = observation.delta.pop("pods")  # the per-pod breakdown, stored for replay
        assert observation.delta == {"total": total, "failed": failed}
        assert sum(p["total"] for p in pods.values()) == total
        assert sum(p["failed"] for p in pods.values()) == failed
        assert observation.snapshot["pods"]  # raw per-series counters kept for audit

    # ... and shown by `canary show --json`, as docs/metrics.md says
    assert main(["--database-url", migrated_url, "show", out["analysis_id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["rounds"][1]["counters"]["errors"]["canary"] == observation.snapshot
    assert shown["rounds"][0]["counters"]["latency"]["baseline"]["pods"]  # the warm-up's too

    # text output and a shorter interval
    code = main([*argv, *window, "--interval", "60s"])
    text = capsys.readouterr().out
    assert code == 1 and "verdict: FAIL" in text and "errors canary" in text


def test_analyze_rejects_bad_windows(
    backfilled_scenarios, migrated_url: str, tmp_path, capsys
) -> None:
    from canary.cli import main

    server, _ = backfilled_scenarios
    config = write_config(tmp_path / "canary.toml", server.url, "worse")
    argv = ["--config", config, "--database-url", migrated_url, "analyze"]
    cases = [
        (["--canary", "nope", "--from", "now-1h", "--to", "now"], "no canary named 'nope'"),
        (["--canary", "shop", "--from", "now", "--to", "now-1h"], "--to must be after --from"),
        (["--canary", "shop", "--from", "yesterday", "--to", "now"], "--from 'yesterday'"),
        (["--canary", "shop", "--from", "now-1m", "--to", "now"], "shorter than one round"),
        (["--canary", "shop", "--from", "now-1h", "--to", "now+1h"], "--to 'now+1h'"),
        (
            ["--canary", "shop", "--from", "now-1h", "--to", "now", "--interval", "fast"],
            "--interval 'fast'",
        ),
    ]
    for args, message in cases:
        assert main([*argv, *args]) == 2, args
        assert message in capsys.readouterr().err


def test_analyze_with_prometheus_down_is_a_runtime_error(
    migrated_url: str, tmp_path, capsys
) -> None:
    from canary.cli import main

    config = write_config(tmp_path / "canary.toml", "http://127.0.0.1:9", "worse")
    code = main(
        ["--config", config, "--database-url", migrated_url, "analyze", "--canary", "shop",
         "--from", "now-10m", "--to", "now"]
    )  # fmt: skip
    assert code == 3
    assert "Prometheus at http://127.0.0.1:9 is not reachable" in capsys.readouterr().err


@pytest.mark.parametrize("scenario", ["resets", "gaps"])
def test_analyze_asks_only_for_the_judged_buckets_once_the_judge_fixed_them(
    backfilled_scenarios, migrated_url: str, tmp_path, capsys, scenario: str
) -> None:
    """The sequential judge fixes its latency bounds at its warm-up round; the rounds
    after it store only those buckets and +Inf, with the generated counts."""
    import json

    from canary.cli import main
    from canary.store.analyses import load_analysis_full
    from canary.store.database import connect, sessions

    server, scenarios = backfilled_scenarios
    _, expected = scenarios[scenario]
    config = write_config(tmp_path / "canary.toml", server.url, scenario)
    window = ["--from", iso(BOUNDARIES[0]), "--to", iso(BOUNDARIES[-1])]
    argv = ["--config", config, "--database-url", migrated_url, "analyze", "--canary", "shop"]
    main([*argv, *window, "--json"])
    out = json.loads(capsys.readouterr().out)
    with sessions(connect(migrated_url))() as session:
        stored = load_analysis_full(session, out["analysis_id"])
        bounds = stored.judge_state["metrics"]["latency"]["bounds"]
        assert bounds and len(stored.rounds) >= 3  # round 2 is the first narrowed one
        for row in stored.rounds[1:]:
            latency = {o.arm: o.delta for o in row.observations if o.metric == "latency"}
            for arm, delta in latency.items():
                full = expected_histogram(expected, row.index - 1, arm)
                keep = [
                    i
                    for i, b in enumerate(full.bounds)
                    if row.index == 1 or b in bounds or math.isinf(b)
                ]
                assert delta["bounds"] == [
                    "+Inf" if math.isinf(full.bounds[i]) else full.bounds[i] for i in keep
                ], (row.index, arm)
                assert delta["buckets"] == [full.buckets[i] for i in keep], (row.index, arm)
