"""Contract tests: Argo Rollouts' part played against the real server and Prometheus.

Each measurement is executed from the shipped deploy/argo/analysis-template.yaml
(URL, headers, jsonPath and both conditions) by `api_harness.ArgoWebMetric`,
against canary on uvicorn and a backfilled Prometheus 2.42.
"""

from __future__ import annotations

import time

import httpx
import pytest
from api_fixtures import (
    ROUND,
    SCENARIOS,
    TOKEN,
    Clock,
    make_config,
    migrated_sqlite,
    serve,
    template_args,
)
from api_harness import ArgoWebMetric, SlowProxy, evaluate_condition, jsonpath
from prometheus_harness import free_port

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def measure_both(server, service):  # type: ignore[no-untyped-def]
    """(background, gate) measurements of the shipped templates, in that order."""
    args = template_args(server, service)
    return (
        ArgoWebMetric("canary-background", args).measure(),
        ArgoWebMetric("canary-gate", args).measure(),
    )


def _first_verdict(seq: list[tuple[str, int, str, str]]) -> int:
    """Index of the first measurement whose verdict is no longer `running`."""
    return next(i for i, (verdict, *_rest) in enumerate(seq) if verdict != "running")


def test_verdicts_map_to_argo_phases(backfilled, migrated_url) -> None:  # type: ignore[no-untyped-def]
    """pass, fail, running and inconclusive through both shipped templates.

    How many rounds the judge needs is its business; the contract is the mapping:
    running -> (background Successful, gate Inconclusive), pass -> (Successful,
    Successful), fail -> (Failed, Failed), inconclusive -> (Inconclusive, Inconclusive),
    one round per interval, final verdicts stay final.
    """
    clock = Clock(backfilled.start)
    config = make_config(backfilled.prometheus.url)
    server = serve(migrated_url, config, clock)
    try:
        seen: dict[str, list[tuple[str, int, str, str]]] = {s: [] for s in SCENARIOS}
        for _ in range(9):
            for service in SCENARIOS:
                background, gate = measure_both(server, service)
                assert background.status_code == 200, background.body
                value = background.value
                seen[service].append(
                    (value["verdict"], value["round"], background.phase, gate.phase)
                )
                # The gate call came right after: no new round, the same judgement.
                assert gate.value["round"] == value["round"]
                assert gate.body["newRound"] is False
            clock.advance(ROUND)
    finally:
        server.stop()

    for seq in seen.values():
        k = _first_verdict(seq)
        assert seq[:k] == [("running", i, "Successful", "Inconclusive") for i in range(k)]
        assert seq[k][1] == k  # one round per interval, none made up, none skipped
    steady, broken, quiet = seen["steady"], seen["broken"], seen["quiet"]
    assert steady[_first_verdict(steady)][0::2] == ("pass", "Successful")
    assert steady[_first_verdict(steady)][3] == "Successful"
    k = _first_verdict(broken)
    assert broken[k] == ("fail", k, "Failed", "Failed")
    assert all(s == broken[k] for s in broken[k:])  # final: no more rounds
    # quiet: no evidence either way; the budget (max_rounds = 3) ends it inconclusive.
    assert quiet[3] == ("inconclusive", 3, "Inconclusive", "Inconclusive")
    assert all(s == quiet[3] for s in quiet[3:])


def test_response_shape_and_hash_matchers(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Top-level fields at stable paths; only the named ReplicaSets are judged."""
    clock = Clock(backfilled.start)
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url), clock)
    try:
        _, _, c_hash, s_hash = SCENARIOS["steady"]
        url = f"{server.url}/api/v1/argo/measure"
        params = {"canary": "steady", "canaryHash": c_hash, "stableHash": s_hash}
        first = httpx.get(url, params=params, headers=AUTH).json()
        assert first["warmup"] is True and first["round"] == 0
        clock.advance(ROUND)
        body = httpx.get(url, params=params, headers=AUTH).json()
    finally:
        server.stop()
    for path in ("{$.verdict}", "{$.analysisId}", "{$.round}", "{$.score}", "{$.reasons}"):
        jsonpath(body, path)
    assert jsonpath(body, "{$.verdict}") == "running"
    assert jsonpath(body, "{$.result.analysisId}") == body["analysisId"] == first["analysisId"]
    assert body["newRound"] is True and body["stale"] is False and body["round"] == 1
    stats = body["metrics"]["errors"]["statistics"]
    # 60 s at 20 requests/s on each side, 2% of them 5xx: the old ReplicaSet's pods
    # (50% 5xx) are not counted in either arm.
    assert stats["canary"] == {"total": 1200, "failed": 24}
    assert stats["baseline"] == {"total": 1200, "failed": 24}


def test_fast_calls_do_not_fabricate_rounds(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(backfilled.start)
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url), clock)
    background = ArgoWebMetric("canary-background", template_args(server, "steady"))
    try:
        rounds = []
        for advance in (0, 0, 20, 20, 20, 10, 60):
            clock.advance(advance)
            m = background.measure()
            rounds.append((m.value["round"], m.body["newRound"]))
    finally:
        server.stop()
    # A new round only once 90% of the 60 s interval has passed since the last one.
    assert rounds == [
        (0, True),
        (0, False),
        (0, False),
        (0, False),
        (1, True),
        (1, False),
        (2, True),
    ]


def test_post_json_with_string_and_number_arguments(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(backfilled.start)
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url), clock)
    _, _, c_hash, s_hash = SCENARIOS["broken"]
    try:
        url = f"{server.url}/api/v1/argo/measure"
        got = httpx.get(
            url,
            params={"canary": "broken", "canaryHash": c_hash, "stableHash": s_hash},
            headers=AUTH,
        ).json()
        clock.advance(ROUND)
        posted = httpx.post(
            url,
            json={
                "namespace": "shop",
                "service": "broken-canary",
                "canaryHash": c_hash,
                "stableHash": s_hash,
                "profile": "default",
            },
            headers=AUTH,
        )
        numeric = httpx.post(
            url,
            json={"canary": "broken", "canaryHash": 123456, "stableHash": 654321},
            headers=AUTH,
        )
    finally:
        server.stop()
    assert posted.status_code == 200
    assert posted.json()["analysisId"] == got["analysisId"]  # same key: same analysis
    assert (posted.json()["round"], posted.json()["newRound"]) == (1, True)
    assert numeric.status_code == 200 and numeric.json()["canaryHash"] == "123456"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"canaryHash": "a1", "stableHash": "b2"}, "canary"),
        ({"canary": "nope", "canaryHash": "a1", "stableHash": "b2"}, "canary"),
        ({"canary": "steady", "stableHash": "b2"}, "canaryHash"),
        ({"canary": "steady", "canaryHash": "a1"}, "stableHash"),
        ({"canary": "steady", "canaryHash": 'a1"}', "stableHash": "b2"}, "canaryHash"),
        ({"canary": "steady", "canaryHash": "A1", "stableHash": "b2"}, "canaryHash"),
        ({"canary": "steady", "canaryHash": "a1", "stableHash": "a1"}, "canaryHash"),
        (
            {"canary": "steady", "canaryHash": "a1", "stableHash": "b2", "namespace": "x"},
            "namespace",
        ),
        ({"canary": "steady", "canaryHash": "a1", "stableHash": "b2", "profile": "A B"}, "profile"),
        ({"canary": "steady", "canaryHash": "a1", "stableHash": "b2", "hash": "x"}, "hash"),
        ({"service": "unknown-svc", "canaryHash": "a1", "stableHash": "b2"}, "service"),
        ({"canary": "steady", "canaryHash": "a" * 257, "stableHash": "b2"}, "canaryHash"),
        (
            {"canary": "steady", "canaryHash": "a1", "stableHash": "b2", "profile": "p" * 257},
            "profile",
        ),
    ],
)
def test_bad_arguments_are_400_naming_the_field(backfilled, tmp_path, params, field) -> None:  # type: ignore[no-untyped-def]
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url))
    try:
        url = f"{server.url}/api/v1/argo/measure"
        got = httpx.get(url, params=params, headers=AUTH)
        posted = httpx.post(url, json=params, headers=AUTH)
    finally:
        server.stop()
    for response in (got, posted):
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        assert response.json()["field"] == field
        assert field in response.json()["error"]


def test_post_body_errors_are_json(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url))
    url = f"{server.url}/api/v1/argo/measure"
    try:
        garbage = httpx.post(
            url, content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
        )
        array = httpx.post(url, json=["steady"], headers=AUTH)
        huge = httpx.post(url, json={"canary": "x" * 10000}, headers=AUTH)
    finally:
        server.stop()
    assert garbage.status_code == 400 and garbage.json()["field"] == "body"
    assert array.status_code == 400 and "error" in array.json()
    assert huge.status_code == 413 and "bytes" in huge.json()["error"]


def test_prometheus_down_is_an_argo_error(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(backfilled.start)
    down = make_config(f"http://127.0.0.1:{free_port()}")
    server = serve(migrated_sqlite(tmp_path), down, clock)
    try:
        results = []
        for _ in range(3):
            results.append(measure_both(server, "steady"))
            clock.advance(ROUND)
    finally:
        server.stop()
    for background, gate in results:
        # Non-2xx: Argo records an Error (retried; consecutiveErrorLimit fails the run),
        # never a success of either template.
        assert background.phase == gate.phase == "Error"
        assert background.status_code == 503
        assert "unreachable" in background.body["error"]
        assert background.body["verdict"] == "running"


def test_a_failed_round_is_queried_again_from_5_seconds(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Argo retries an Error every 10 s: each retry runs a fresh round; calls in
    between answer the stored failure without querying (one failed round per 5 s)."""
    clock = Clock(backfilled.start)
    with SlowProxy(backfilled.prometheus.url) as proxy:
        server = serve(migrated_sqlite(tmp_path), make_config(proxy.url), clock)
        background = ArgoWebMetric("canary-background", template_args(server, "steady"))
        try:
            answers = [background.measure()]  # the warm-up
            clock.advance(ROUND)
            proxy.down = True
            for advance in (0, 1, 3, 2, 10):  # t = 60, 61, 64, 66, 76
                clock.advance(advance)
                answers.append(background.measure())
            proxy.down = False
            clock.advance(10)  # t = 86: Prometheus is back
            answers.append(background.measure())
        finally:
            server.stop()
    codes = [m.status_code for m in answers]
    assert codes == [200, 503, 503, 503, 503, 503, 200]
    # Rounds 1 (t = 60), 2 (t = 66) and 3 (t = 76) failed; 61 and 64 answered round 1.
    assert [m.body["round"] for m in answers[1:6]] == [1, 1, 1, 2, 3]
    assert "queried again from" in answers[2].body["error"]
    assert answers[6].body["newRound"] is True and answers[6].value["round"] == 4


def test_slow_prometheus_answers_stale_within_argo_timeout(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(backfilled.start)
    url = migrated_sqlite(tmp_path)
    with SlowProxy(backfilled.prometheus.url, delay=2.5) as proxy:
        config = make_config(proxy.url, timeout="30s")
        server = serve(url, config, clock, round_timeout=1.0)
        background = ArgoWebMetric("canary-background", template_args(server, "steady"))
        try:
            first = background.measure()
            again = background.measure()  # while the first round is still running
            time.sleep(4.0)  # the round finishes in the background and is stored
            clock.advance(ROUND)
            later = background.measure()
            time.sleep(4.0)
            clock.advance(ROUND)
            proxy.delay = 0.0
            fresh = background.measure()
        finally:
            server.stop()
    # Within Argo's 10 s timeout (the harness gives up there), not after the 2.5 s query.
    assert first.status_code == 200 and first.phase != "Error"
    assert first.body["stale"] is True and first.value["verdict"] == "running"
    assert first.phase == "Successful"  # running: the background analysis continues
    assert again.body["stale"] is True and again.phase != "Error"
    assert later.body["stale"] is True and later.value["round"] == 0  # the warm-up got stored
    assert fresh.body["stale"] is False and fresh.value["round"] == 2


def test_restart_continues_the_evidence(backfilled, migrated_url) -> None:  # type: ignore[no-untyped-def]
    """Stop the server mid-analysis; a new one continues the same stored evidence.

    A reference analysis of the same data (profile `reference`) runs without a
    restart; the restarted one must reach the same verdict at the same round with the
    same statistics — it would need more rounds if the evidence had started over.
    """
    clock = Clock(backfilled.start)
    config = make_config(backfilled.prometheus.url)
    reference_args = {"profile": "reference"}  # same data, its own stored analysis

    def measure(server, **extra):  # type: ignore[no-untyped-def]
        metric = ArgoWebMetric("canary-gate", template_args(server, "steady"))
        web = metric.metric["provider"]["web"]
        web["url"] += "".join(f"&{k}={v}" for k, v in extra.items())
        return metric.measure()

    restarted, reference = [], []
    server = serve(migrated_url, config, clock)
    try:
        for _ in range(3):  # warm-up + 2 judged rounds
            restarted.append(measure(server))
            reference.append(measure(server, **reference_args))
            clock.advance(ROUND)
    finally:
        server.stop()
    server = serve(migrated_url, config, clock)  # a new engine, source and app
    try:
        for _ in range(6):
            restarted.append(measure(server))
            reference.append(measure(server, **reference_args))
            clock.advance(ROUND)
    finally:
        server.stop()

    assert len({m.value["analysisId"] for m in restarted}) == 1
    assert restarted[0].value["analysisId"] != reference[0].value["analysisId"]
    assert [m.value["round"] for m in restarted] == list(range(9))
    k = next(i for i, m in enumerate(restarted) if m.value["verdict"] == "pass")
    assert k > 3, "PASS must come after the restart for this test to mean anything"
    assert [(m.value["verdict"], m.phase) for m in restarted] == [
        (m.value["verdict"], m.phase) for m in reference
    ]
    assert restarted[k].body["metrics"] == reference[k].body["metrics"]
    assert restarted[k].body["metrics"]["errors"]["statistics"]["canary"]["total"] == k * 1200


def test_two_replicas_in_turn_continue_one_analysis(backfilled, migrated_url) -> None:  # type: ignore[no-untyped-def]
    """Two servers over one database measure one rollout in turn, as two replicas
    behind one Service would: whichever replica ran the previous round, the next call
    past the interval runs the next round on the stored evidence, and the verdicts and
    statistics are those of a reference analysis measured by one server alone."""
    clock = Clock(backfilled.start)
    config = make_config(backfilled.prometheus.url)

    def measure(server, **extra):  # type: ignore[no-untyped-def]
        metric = ArgoWebMetric("canary-gate", template_args(server, "steady"))
        web = metric.metric["provider"]["web"]
        web["url"] += "".join(f"&{k}={v}" for k, v in extra.items())
        return metric.measure()

    replicas = (serve(migrated_url, config, clock), serve(migrated_url, config, clock))
    in_turn, reference = [], []
    try:
        for i in range(9):  # warm-up + 8 judged rounds
            in_turn.append(measure(replicas[i % 2]))
            reference.append(measure(replicas[0], profile="reference"))
            clock.advance(ROUND)
    finally:
        for server in replicas:
            server.stop()

    assert [(m.value["round"], m.body["newRound"]) for m in in_turn] == [
        (i, True) for i in range(9)
    ]
    assert len({m.value["analysisId"] for m in in_turn}) == 1
    k = next(i for i, m in enumerate(in_turn) if m.value["verdict"] == "pass")
    assert [(m.value["verdict"], m.phase) for m in in_turn] == [
        (m.value["verdict"], m.phase) for m in reference
    ]
    assert in_turn[k].body["metrics"] == reference[k].body["metrics"]
    assert in_turn[-1].body["metrics"] == reference[-1].body["metrics"]


def test_conditions_of_the_shipped_templates() -> None:
    """The evaluator itself on the shipped conditions (guards the contract tests)."""
    from api_harness import argo_phase, shipped_templates

    background = shipped_templates()["canary-background"]["spec"]["metrics"][0]
    gate = shipped_templates()["canary-gate"]["spec"]["metrics"][0]
    phases = {
        v: (argo_phase({"verdict": v}, background), argo_phase({"verdict": v}, gate))
        for v in ("pass", "fail", "running", "inconclusive")
    }
    assert phases == {
        "pass": ("Successful", "Successful"),
        "fail": ("Failed", "Failed"),
        "running": ("Successful", "Inconclusive"),
        "inconclusive": ("Inconclusive", "Inconclusive"),
    }
    assert evaluate_condition('result.a == "x" && !(result.b != 2)', {"a": "x", "b": 2})
    assert background["provider"]["web"]["jsonPath"] == "{$.result}"
