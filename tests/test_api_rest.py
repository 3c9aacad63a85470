"""The /api/v1 REST endpoints, /readyz and /metrics on a real server."""

from __future__ import annotations

import httpx
import pytest
from api_fixtures import SCENARIOS, TOKEN, make_config, migrated_sqlite, serve
from prometheus_harness import free_port

from canary import telemetry

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(backfilled, database_url):  # type: ignore[no-untyped-def]
    from api_harness import ApiServer

    from canary.api.app import AppContext, create_app
    from canary.metrics.source import PrometheusSource
    from canary.store.database import connect, sessions

    config = make_config(backfilled.prometheus.url)
    context = AppContext(
        config=config,
        sessions=sessions(connect(database_url)),
        source=PrometheusSource(config.prometheus),
        tokens=[TOKEN],
        registry=telemetry.REGISTRY,
    )
    with ApiServer(create_app(context)) as server:
        yield httpx.Client(base_url=server.url, headers=AUTH, timeout=10)


@pytest.fixture
def api(backfilled, migrated_url):  # type: ignore[no-untyped-def]
    """A server on SQLite and on PostgreSQL (one per test)."""
    yield from _client(backfilled, migrated_url)


@pytest.fixture(scope="module")
def shared_api(backfilled, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One server on SQLite for the whole module (stateless checks)."""
    yield from _client(backfilled, migrated_sqlite(tmp_path_factory.mktemp("rest")))


def test_start_pause_resume_abort_lifecycle(api) -> None:  # type: ignore[no-untyped-def]
    canaries = api.get("/api/v1/canaries").json()
    assert [(c["name"], c["active"]) for c in canaries] == [
        ("steady", False),
        ("broken", False),
        ("quiet", False),
    ]
    started = api.post("/api/v1/canaries/steady/start", json={"revision": "v2"})
    assert started.status_code == 201
    analysis_id = started.json()["analysisId"]

    again = api.post("/api/v1/canaries/steady/start")
    assert again.status_code == 409 and "already has an active analysis" in again.json()["error"]
    assert api.get("/api/v1/canaries/steady").json()["analysis"]["analysisId"] == analysis_id

    assert api.post(f"/api/v1/analyses/{analysis_id}/pause").json()["status"] == "paused"
    twice = api.post(f"/api/v1/analyses/{analysis_id}/pause")
    assert twice.status_code == 409 and "cannot pause" in twice.json()["error"]
    assert api.post(f"/api/v1/analyses/{analysis_id}/resume").json()["status"] == "running"
    aborted = api.post(f"/api/v1/analyses/{analysis_id}/abort").json()
    assert aborted["status"] == "aborted" and aborted["weight"] == 0

    detail = api.get(f"/api/v1/analyses/{analysis_id}").json()
    assert detail["status"] == "aborted" and detail["revision"] == "v2"
    assert [(a["kind"], a["toWeight"], a["state"]) for a in detail["actions"]] == [
        ("start", 10, "pending"),
        ("abort", 0, "pending"),
    ]
    listed = api.get("/api/v1/analyses", params={"canary": "steady"}).json()
    assert [a["analysisId"] for a in listed] == [analysis_id]
    assert api.get("/api/v1/analyses", params={"status": "running"}).json() == []
    status = {row["canary"]: row for row in api.get("/api/v1/status").json()}
    assert status["steady"]["active"] is False


def test_argo_analyses_are_listed_with_rounds_and_cannot_be_operated(api) -> None:  # type: ignore[no-untyped-def]
    _, _, c_hash, s_hash = SCENARIOS["broken"]
    params = {"canary": "broken", "canaryHash": c_hash, "stableHash": s_hash}
    measured = api.get("/api/v1/argo/measure", params=params).json()
    detail = api.get(f"/api/v1/analyses/{measured['analysisId']}").json()
    assert detail["source"] == "argo" and detail["revision"] == c_hash
    assert detail["key"] == f"argo/shop/broken/{c_hash}/{s_hash}/default"
    assert [r["index"] for r in detail["rounds"]] == [0]
    pods = detail["settings"]["arms"]["canary"]["match_regex"]["pod"]
    assert pods == f".+-{c_hash}-[a-z0-9]{{5}}"
    refused = api.post(f"/api/v1/analyses/{measured['analysisId']}/promote")
    assert refused.status_code == 409 and "judged-only" in refused.json()["error"]
    assert api.get("/api/v1/analyses", params={"source": "argo"}).json()[0]["canary"] == "broken"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field"),
    [
        ("GET", "/api/v1/analyses/nope-123", {}, 404, None),
        ("POST", "/api/v1/analyses/nope-123/pause", {}, 404, None),
        ("POST", "/api/v1/analyses/nope-123/explode", {}, 400, "operation"),
        ("GET", "/api/v1/canaries/unknown", {}, 404, None),
        ("POST", "/api/v1/canaries/unknown/start", {}, 404, None),
        ("POST", "/api/v1/canaries/steady/start", {"json": {"rev": "x"}}, 400, "rev"),
        ("GET", "/api/v1/analyses", {"params": {"limit": "0"}}, 400, "limit"),
        ("GET", "/api/v1/analyses", {"params": {"verdict": "great"}}, 400, "verdict"),
        ("GET", "/api/v1/analyses", {"params": {"sort": "x"}}, 400, "sort"),
        ("DELETE", "/api/v1/analyses", {}, 405, None),
        ("GET", "/api/v2/nothing", {}, 404, None),
    ],
)
def test_errors_are_json_with_the_field(shared_api, method, path, kwargs, status, field) -> None:  # type: ignore[no-untyped-def]
    response = shared_api.request(method, path, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == status and body["error"]
    assert body.get("field") == field


def test_body_limit_is_413_json(shared_api) -> None:
    api = shared_api  # type: ignore[no-untyped-def]
    big = api.post("/api/v1/canaries/steady/start", json={"revision": "x" * 5000})
    assert big.status_code == 413 and "4096 bytes" in big.json()["error"]

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(10):
            yield b"x" * 1000

    streamed = api.post("/api/v1/argo/measure", content=chunks())
    assert streamed.status_code == 413 and streamed.json()["status"] == 413


def test_metrics_and_readiness(api, backfilled) -> None:  # type: ignore[no-untyped-def]
    api.get("/api/v1/analyses/some-id")
    _, _, c_hash, s_hash = SCENARIOS["steady"]
    api.get(
        "/api/v1/argo/measure",
        params={"canary": "steady", "canaryHash": c_hash, "stableHash": s_hash},
    )
    text = httpx.get(str(api.base_url) + "/metrics").text
    route = "/api/v1/analyses/{analysis_id}"
    assert f'canary_http_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    assert "canary_http_request_duration_seconds_bucket" in text
    assert "canary_query_duration_seconds" in text  # the shared telemetry registry
    ready = httpx.get(str(api.base_url) + "/readyz")
    checks = ready.json()["checks"]
    assert ready.status_code == 200 and checks == {
        "database": "ok",
        "disk": checks["disk"],  # SQLite: free space checked; PostgreSQL: not ours
        "prometheus": "ok",
        "kubernetes": "not used (`canary serve` never calls Kubernetes)",
    }
    assert checks["disk"] in ("ok", "not checked (PostgreSQL: the disk is the server's)")


def test_readiness_names_what_is_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = serve(migrated_sqlite(tmp_path), make_config(f"http://127.0.0.1:{free_port()}"))
    try:
        ready = httpx.get(server.url + "/readyz")
    finally:
        server.stop()
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["prometheus"].startswith("error")
