"""The shipped AnalysisTemplates under Argo's own schedule (`tests.argo_controller`).

Argo measures every `interval`, retries an Error every 10 s, and ends the run as
Failed (`failed > failureLimit`), Inconclusive (`inconclusive > inconclusiveLimit`),
Error (`consecutiveError > consecutiveErrorLimit`) or Successful (`count` reached).
Each test drives the real server, reading a real Prometheus through a proxy that can
drop connections or be slow, and asserts the AnalysisRun phase Argo would reach.
"""

from __future__ import annotations

import threading

import httpx
from api_fixtures import ROUND, SCENARIOS, TOKEN, Clock, make_config, migrated_sqlite, serve
from api_harness import ArgoWebMetric, SlowProxy
from argo_controller import ERROR_RETRY_SECONDS, run_metric

AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 9  # consecutiveErrorLimit of the shipped templates


def _metrics(server, service):  # type: ignore[no-untyped-def]
    _, _, c_hash, s_hash = SCENARIOS[service]
    args = {
        "canary": service,
        "canary-hash": c_hash,
        "stable-hash": s_hash,
        "canary-url": server.url,
        "api-token": TOKEN,
    }
    return ArgoWebMetric("canary-background", args), ArgoWebMetric("canary-gate", args)


def _outage(proxy: SlowProxy, start: float, end: float):  # type: ignore[no-untyped-def]
    def before_each(t: float) -> None:
        proxy.down = start <= t < end

    return before_each


def _errors(run) -> list[float]:  # type: ignore[no-untyped-def]
    return [m.at for m in run.measurements if m.measurement.phase == "Error"]


def test_shipped_templates_set_the_documented_error_limit() -> None:
    from api_harness import shipped_templates

    for template in shipped_templates().values():
        assert template["spec"]["metrics"][0]["consecutiveErrorLimit"] == LIMIT


def test_a_prometheus_blip_does_not_stop_the_rollout(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Down for 30 s: three errors 10 s apart, then the first retry judges a fresh round."""
    clock = Clock(backfilled.start)
    with SlowProxy(backfilled.prometheus.url) as proxy:
        server = serve(migrated_sqlite(tmp_path), make_config(proxy.url), clock)
        background, gate = _metrics(server, "steady")
        try:
            run = run_metric(background, clock, until=600, before_each=_outage(proxy, 175, 205))
            proxy.down = False
            promoted = run_metric(gate, clock, until=0)
        finally:
            server.stop()
    assert run.phase() == "Running"  # the background analysis goes on: the steps continue
    assert _errors(run) == [180, 190, 200]  # exactly the measurements taken while down
    after = next(m for m in run.measurements if m.at == 210).measurement
    assert after.phase == "Successful" and after.body["newRound"] is True
    # The fresh round spans the whole time since the last good snapshot (t = 120).
    # Back to the interval after the successful retry.
    assert [m.at for m in run.measurements] == [
        0,
        60,
        120,
        180,
        190,
        200,
        210,
        270,
        330,
        390,
        450,
        510,
        570,
    ]
    assert run.measurements[-1].measurement.value["verdict"] == "pass"
    assert promoted.phase() == "Successful"


def test_an_outage_longer_than_the_limit_errors_the_run(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Down for 3 minutes: Error after limit + 1 consecutive errors, 10 s apart."""
    clock = Clock(backfilled.start)
    with SlowProxy(backfilled.prometheus.url) as proxy:
        server = serve(migrated_sqlite(tmp_path), make_config(proxy.url), clock)
        background, _ = _metrics(server, "steady")
        try:
            run = run_metric(background, clock, until=600, before_each=_outage(proxy, 175, 355))
        finally:
            server.stop()
    assert run.phase() == "Error"
    assert _errors(run) == [180 + i * ERROR_RETRY_SECONDS for i in range(LIMIT + 1)]
    assert all(m.measurement.status_code == 503 for m in run.measurements if m.at >= 180)
    assert all("unreachable" in m.measurement.body["error"] for m in run.measurements[3:])


def test_a_prometheus_slower_than_its_timeout_counts_as_errors(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every round times out in the background: after the first (nothing stored yet)
    the stale answers are 503s, and the run ends in Error instead of succeeding forever."""
    clock = Clock(backfilled.start)
    with SlowProxy(backfilled.prometheus.url, delay=1.5) as proxy:
        config = make_config(proxy.url, timeout="1s")
        server = serve(migrated_sqlite(tmp_path), config, clock, round_timeout=0.5)
        background, _ = _metrics(server, "steady")
        try:
            # Real time passes too: 3 s per 60 s interval, 0.5 s per 10 s retry.
            run = run_metric(background, clock, until=900, pace=0.05)
        finally:
            server.stop()
    first = run.measurements[0].measurement
    assert first.phase == "Successful" and first.body["stale"] is True
    assert run.phase() == "Error"
    assert [m.measurement.status_code for m in run.measurements[1:]] == [503] * (LIMIT + 1)
    assert _errors(run) == [60 + i * ERROR_RETRY_SECONDS for i in range(LIMIT + 1)]


def test_a_bad_canary_fails_the_run_and_a_quiet_one_is_inconclusive(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(backfilled.start)
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url), clock)
    try:
        broken = run_metric(_metrics(server, "broken")[0], clock, until=600)
        clock.now = Clock(backfilled.start).now
        quiet = run_metric(_metrics(server, "quiet")[0], clock, until=600)
    finally:
        server.stop()
    assert broken.phase() == "Failed"
    # One measurement per interval until the first fail verdict, which ends the run.
    verdicts = [m.measurement.value["verdict"] for m in broken.measurements]
    assert verdicts[-1] == "fail" and set(verdicts[:-1]) == {"running"}
    assert [m.at for m in broken.measurements] == [i * ROUND for i in range(len(verdicts))]
    # quiet: no evidence; max_rounds = 3 ends it inconclusive; inconclusiveLimit 0.
    assert quiet.phase() == "Inconclusive"
    assert [m.at for m in quiet.measurements] == [0, 60, 120, 180]


def test_concurrent_first_calls_judge_no_short_window(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Many first calls for new keys at once, on two servers over one database: one
    warm-up per key, and no judged round until the interval has passed."""
    clock = Clock(backfilled.start)
    url = migrated_sqlite(tmp_path)
    config = make_config(backfilled.prometheus.url)
    servers = [serve(url, config, clock), serve(url, config, clock)]
    _, _, c_hash, s_hash = SCENARIOS["steady"]
    answers: list[httpx.Response] = []

    def call(server, profile: str) -> None:  # type: ignore[no-untyped-def]
        params = {"canary": "steady", "canaryHash": c_hash, "stableHash": s_hash}
        answers.append(
            httpx.get(
                f"{server.url}/api/v1/argo/measure",
                params={**params, "profile": profile},
                headers=AUTH,
                timeout=30,
            )
        )

    try:
        for rep in range(2):
            threads = [
                threading.Thread(target=call, args=(servers[i % 2], f"p{k}"))
                for k in range(4)
                for i in range(6)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if rep == 0:
                clock.advance(ROUND)
        listed = httpx.get(
            f"{servers[0].url}/api/v1/analyses", params={"source": "argo"}, headers=AUTH
        ).json()
        details = [
            httpx.get(f"{servers[0].url}/api/v1/analyses/{a['analysisId']}", headers=AUTH).json()
            for a in listed
        ]
    finally:
        for server in servers:
            server.stop()
    assert [a.status_code for a in answers] == [200] * 48
    assert len(details) == 4
    for analysis in details:
        # The warm-up at t = 0 and one judged round at t = 60, whoever called first.
        assert [r["index"] for r in analysis["rounds"]] == [0, 1], analysis["key"]
        judged = analysis["rounds"][1]
        assert judged["windowStart"] == analysis["rounds"][0]["windowEnd"]
        assert judged["windowEnd"] == clock.now.isoformat()
