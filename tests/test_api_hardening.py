"""The HTTP API under hostile or failing conditions, on a real server: bounded
/metrics labels, database errors, NUL bytes, readiness reasons, slow and excess
connections, limits on new analyses, filters in SQL, and the API documents."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from api_fixtures import (
    ROUND,
    SCENARIOS,
    TOKEN,
    Clock,
    make_config,
    migrated_sqlite,
    serve,
)
from api_harness import SlowProxy
from conftest import POSTGRES_URL
from prometheus_harness import free_port
from sqlalchemy.engine import Engine

from canary.api.health import MIN_FREE_BYTES

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _with_server(config, **server):  # type: ignore[no-untyped-def]
    return config.model_copy(update={"server": config.server.model_copy(update=server)})


def _measure(url: str, service: str = "steady", token: str = TOKEN, **params: str):  # type: ignore[no-untyped-def]
    _, _, c_hash, s_hash = SCENARIOS[service]
    return httpx.get(
        f"{url}/api/v1/argo/measure",
        params={"canary": service, "canaryHash": c_hash, "stableHash": s_hash, **params},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _migrate(url: str) -> None:
    from canary.store.database import connect, migrate

    engine = connect(url)
    migrate(engine)
    engine.dispose()


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_metrics_labels_stay_bounded(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url))
    try:
        with httpx.Client(base_url=server.url) as client:
            for i in range(200):
                client.request(f"BREW{i}", f"/made-up/{i}?x={i}")
                client.request("GET", f"/api/v1/analyses/id-{i}")  # 401, one route template
            text = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    requests = _series(text, "canary_http_requests_total")
    assert len(requests) <= 4, requests
    assert 'canary_http_requests_total{method="other",route="unmatched",status="404"} 200.0' in text
    assert not [line for line in text.splitlines() if "BREW" in line or "made-up" in line]
    assert len(text) < 60_000


def test_database_errors_are_503_json_naming_the_database(backfilled, caplog) -> None:  # type: ignore[no-untyped-def]
    """The database disappears under a running server (PostgreSQL, dropped)."""
    from conftest import _fresh_postgres_database

    fresh = _fresh_postgres_database()
    url = next(fresh)
    try:
        _migrate(url)
        server = serve(url, make_config(backfilled.prometheus.url))
        try:
            assert httpx.get(server.url + "/api/v1/analyses", headers=AUTH).status_code == 200
            admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            name = url.rsplit("/", 1)[1]
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()
            caplog.clear()
            caplog.set_level(logging.WARNING, logger="canary.api")
            listed = httpx.get(server.url + "/api/v1/analyses", headers=AUTH)
            measured = _measure(server.url)
            ready = httpx.get(server.url + "/readyz")
        finally:
            server.stop()
    finally:
        fresh.close()
    for response in (listed, measured):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error.startswith("database unavailable: postgresql+psycopg://postgres@")
        assert name in error and "Traceback" not in error
    assert ready.status_code == 503 and ready.json()["reasons"][0].startswith("database: ")
    records = [r for r in caplog.records if r.name == "canary.api"]
    assert len(records) == 2 and all(r.exc_info is None for r in records)
    assert all("\n" not in r.getMessage() for r in records)


def test_nul_bytes_are_400(backfilled, postgres_url) -> None:  # type: ignore[no-untyped-def]
    _migrate(postgres_url)
    server = serve(postgres_url, make_config(backfilled.prometheus.url))
    try:
        answers = {
            "path": httpx.get(server.url + "/api/v1/analyses/a%00b", headers=AUTH),
            "query": httpx.get(server.url + "/api/v1/analyses?canary=st%00eady", headers=AUTH),
            "argo": _measure(server.url, profile="a\x00b"),
            "body": httpx.post(
                server.url + "/api/v1/canaries/steady/start",
                json={"revision": "v1\x00"},
                headers=AUTH,
            ),
        }
        fine = httpx.get(server.url + "/api/v1/analyses?canary=steady", headers=AUTH)
    finally:
        server.stop()
    for where, response in answers.items():
        assert response.status_code == 400, (where, response.text)
        assert response.headers["content-type"] == "application/json"
    assert answers["path"].json()["field"] == "path"
    assert answers["query"].json()["field"] == "query"
    assert answers["body"].json()["field"] == "revision"
    assert fine.status_code == 200


def _shipped_readiness_probe() -> str:
    import yaml

    path = Path(__file__).resolve().parents[1] / "deploy/kubernetes/base/deployment.yaml"
    deployment = yaml.safe_load(path.read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["readinessProbe"]["httpGet"]["path"]


class _GarbageProxy(SlowProxy):
    """A Prometheus whose /-/ready says ready but whose queries answer HTML."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        handler = self.server.RequestHandlerClass
        forward = handler.do_GET

        def garbage(request) -> None:  # type: ignore[no-untyped-def]
            if not request.path.startswith("/api/"):
                forward(request)
                return
            length = int(request.headers.get("Content-Length") or 0)
            if length:
                request.rfile.read(length)
            body = b"<html>502 from some proxy</html>"
            request.send_response(200)
            request.send_header("Content-Type", "text/html")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)

        handler.do_GET = garbage
        handler.do_POST = garbage


def test_readiness_names_garbage_prometheus_and_honours_exclude(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with _GarbageProxy(backfilled.prometheus.url) as proxy:
        assert httpx.get(proxy.url + "/-/ready").status_code == 200
        server = serve(migrated_sqlite(tmp_path), make_config(proxy.url))
        try:
            full = httpx.get(server.url + "/readyz")
            probe = httpx.get(server.url + _shipped_readiness_probe())
            unknown = httpx.get(server.url + "/readyz?exclude=etcd")
        finally:
            server.stop()
    assert full.status_code == 503
    assert full.json()["reasons"] == [f"prometheus: {full.json()['checks']['prometheus'][7:]}"]
    assert full.json()["checks"]["prometheus"].startswith("error: ")
    # The Deployment's probe: Prometheus is reported, but does not remove the endpoint,
    # so Argo keeps getting canary's JSON answers during a Prometheus outage.
    assert probe.status_code == 200 and probe.json()["checks"]["prometheus"].startswith("error")
    assert probe.json()["excluded"] == ["prometheus", "kubernetes"]
    assert unknown.status_code == 400 and unknown.json()["field"] == "exclude"


def test_readiness_names_a_full_disk(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The SQLite database on a small tmpfs that then fills up."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    assert done.returncode == 0, f"mounting a tmpfs needs root: {done.stderr!r}"
    try:
        url = migrated_sqlite(mount)
        server = serve(url, make_config(backfilled.prometheus.url))
        try:
            before = httpx.get(server.url + "/readyz?exclude=prometheus")
            with (mount / "filler").open("wb") as filler:
                try:
                    while True:
                        filler.write(b"\0" * 1024 * 1024)
                        filler.flush()
                except OSError:
                    pass
            after = httpx.get(server.url + "/readyz?exclude=prometheus")
        finally:
            server.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert before.status_code == 200 and before.json()["checks"]["disk"] == "ok"
    assert after.status_code == 503
    (reason,) = after.json()["reasons"]
    assert reason.startswith("disk: disk full: ") and str(mount) in reason
    assert int(reason.split()[3]) < MIN_FREE_BYTES


def test_readiness_names_an_unreachable_kubernetes(backfilled, tmp_path, kubeconfig_file) -> None:  # type: ignore[no-untyped-def]
    """Inside `canary run` (whose daemon moves traffic) the API server is probed too."""
    from api_harness import ApiServer
    from kubeapi import TEST_TOKEN, write_kubeconfig

    from canary.api.app import AppContext, create_app
    from canary.metrics.source import PrometheusSource
    from canary.store.database import connect, sessions

    config = make_config(backfilled.prometheus.url)
    config = config.model_copy(
        update={
            "kubernetes": config.kubernetes.model_copy(
                update={"mode": "kubeconfig", "kubeconfig": str(kubeconfig_file), "retries": 0}
            )
        }
    )
    store = sessions(connect(migrated_sqlite(tmp_path)))
    context = AppContext(
        config=config,
        sessions=store,
        source=PrometheusSource(config.prometheus),
        kubernetes=True,  # as `canary run` serves it
        tokens=[TOKEN],
    )
    app = create_app(context)
    with ApiServer(app) as server:
        up = httpx.get(server.url + "/readyz")
        # The API server moves away: a kubeconfig pointing where nothing listens.
        write_kubeconfig(kubeconfig_file, f"http://127.0.0.1:{free_port()}", token=TEST_TOKEN)
        app.state.kube_probe = None  # the next probe reads the kubeconfig again
        down = httpx.get(server.url + "/readyz")
    assert up.status_code == 200 and up.json()["checks"]["kubernetes"] == "ok"
    assert down.status_code == 503
    assert down.json()["reasons"][0].startswith("kubernetes: ")


def test_slow_and_excess_connections_are_closed(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = _with_server(
        make_config(backfilled.prometheus.url), read_timeout=1.0, max_connections=4
    )
    server = serve(migrated_sqlite(tmp_path), config)
    try:
        port = server.port
        silent = socket.create_connection(("127.0.0.1", port))
        partial = socket.create_connection(("127.0.0.1", port))
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        body = socket.create_connection(("127.0.0.1", port))
        body.sendall(
            b"POST /api/v1/argo/measure HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n{"
        )
        held = socket.create_connection(("127.0.0.1", port))
        excess = socket.create_connection(("127.0.0.1", port))
        excess.settimeout(5)
        refused = excess.recv(4096)
        started = time.monotonic()
        answers = []
        for sock in (silent, partial, body):
            sock.settimeout(10)
            answers.append(sock.recv(4096))
            assert sock.recv(4096) == b""  # closed by the server
        waited = time.monotonic() - started
        for sock in (silent, partial, body, held, excess):
            sock.close()
        time.sleep(0.2)
        ok = httpx.get(server.url + "/healthz")  # capacity is back
    finally:
        server.stop()
    assert refused.startswith(b"HTTP/1.1 503 ") and b'"too many open connections' in refused
    assert answers[0].startswith(b"HTTP/1.1 408 ") and answers[1].startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive within 1s" in answers[0]
    assert waited < 8  # closed by the 1 s read timeout, not held for a minute
    assert ok.status_code == 200


def test_new_analyses_are_limited_per_token_and_in_total(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(backfilled.start)
    config = _with_server(
        make_config(backfilled.prometheus.url), new_analyses_per_minute=3, max_running_analyses=5
    )
    url = migrated_sqlite(tmp_path)
    from api_harness import ApiServer

    from canary.api.app import AppContext, create_app
    from canary.metrics.source import PrometheusSource
    from canary.store.database import connect, sessions

    context = AppContext(
        config=config,
        sessions=sessions(connect(url)),
        source=PrometheusSource(config.prometheus),
        tokens=[TOKEN, "second-token"],
        clock=clock,
    )
    with ApiServer(create_app(context)) as server:
        first = [_measure(server.url, profile=f"a{i}").status_code for i in range(3)]
        limited = _measure(server.url, profile="a3")
        again = _measure(server.url, profile="a0")  # an existing key: never limited
        second = [
            _measure(server.url, token="second-token", profile=f"b{i}").status_code
            for i in range(2)
        ]
        capped = _measure(server.url, token="second-token", profile="b2")
        clock.advance(ROUND)
        later = _measure(server.url, profile="a3")  # the rate allows it; the cap not
        clock.advance(3 * 600)  # the earlier analyses stop counting as running
        freed = _measure(server.url, profile="a3")
    assert first == [200, 200, 200] and second == [200, 200]
    assert limited.status_code == 429 and limited.headers["content-type"] == "application/json"
    assert "at most 3 new Argo keys per minute per API token" in limited.json()["error"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert again.status_code == 200
    assert capped.status_code == 429 and "max_running_analyses = 5" in capped.json()["error"]
    assert later.status_code == 429 and "too many running analyses" in later.json()["error"]
    assert freed.status_code == 200


def test_analysis_filters_run_in_sql(backfilled, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(backfilled.start)
    server = serve(migrated_sqlite(tmp_path), make_config(backfilled.prometheus.url), clock)
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    try:
        for i in range(5):
            _measure(server.url, profile=f"p{i}")
        sa.event.listen(Engine, "before_cursor_execute", record)
        try:
            listed = httpx.get(
                server.url + "/api/v1/analyses",
                params={"source": "daemon", "limit": 1},
                headers=AUTH,
            )
        finally:
            sa.event.remove(Engine, "before_cursor_execute", record)
        argo = httpx.get(
            server.url + "/api/v1/analyses", params={"source": "argo", "limit": 2}, headers=AUTH
        )
    finally:
        server.stop()
    assert listed.status_code == 200 and listed.json() == []
    assert [a["source"] for a in argo.json()] == ["argo", "argo"]
    (select,) = [s for s in statements if "FROM analyses" in s]
    assert "analyses.source = " in select and "LIMIT" in select


@pytest.mark.parametrize("public", [False, True])
def test_api_documents_follow_the_auth_rule(backfilled, tmp_path, public) -> None:  # type: ignore[no-untyped-def]
    config = _with_server(make_config(backfilled.prometheus.url), public_docs=public)
    server = serve(migrated_sqlite(tmp_path), config)
    try:
        anonymous = {p: httpx.get(server.url + p) for p in ("/openapi.json", "/docs", "/redoc")}
        schema = httpx.get(server.url + "/openapi.json", headers=AUTH).json()
    finally:
        server.stop()
    for path, response in anonymous.items():
        assert response.status_code == (200 if public else 401), path
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            assert "401" in operation["responses"], (method, path)
            assert operation.get("security"), (method, path)
    get = schema["paths"]["/api/v1/argo/measure"]["get"]
    required = {p["name"] for p in get["parameters"] if p.get("required")}
    assert required == {"canaryHash", "stableHash"}
    body = schema["components"]["schemas"]["MeasureRequest"]
    assert set(body["required"]) == {"canaryHash", "stableHash"}
