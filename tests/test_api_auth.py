"""Bearer tokens: 401 JSON without a valid one, never logged; health and metrics open;
`canary serve` refuses to start without a token (or an unmigrated database)."""

from __future__ import annotations

import logging

import httpx
import pytest
from api_fixtures import TOKEN, make_config, migrated_sqlite, serve
from prometheus_harness import free_port

from canary.api.auth import token_matches
from canary.cli import main

PROTECTED = ("/api/v1/canaries", "/api/v1/analyses", "/api/v1/argo/measure?canary=steady")


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # type: ignore[no-untyped-def]
    url = migrated_sqlite(tmp_path_factory.mktemp("auth"))
    server = serve(url, make_config(f"http://127.0.0.1:{free_port()}"))
    yield server
    server.stop()


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Basic {TOKEN}", "Bearer", "Bearer wrong-token", f"Bearer {TOKEN[:-1]}"],
)
def test_protected_routes_need_the_token(server, path, authorization) -> None:  # type: ignore[no-untyped-def]
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.get(server.url + path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401 and response.json()["error"]


def test_the_right_token_passes_and_open_routes_need_none(server) -> None:  # type: ignore[no-untyped-def]
    ok = httpx.get(server.url + "/api/v1/canaries", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and [c["name"] for c in ok.json()] == ["steady", "broken", "quiet"]
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/metrics").status_code == 200
    ready = httpx.get(server.url + "/readyz")  # Prometheus is down here: 503, but no 401
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"


def test_tokens_are_never_logged(server, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    for token in ("wrong-secret-value", TOKEN):
        httpx.get(server.url + "/api/v1/canaries", headers={"Authorization": f"Bearer {token}"})
    assert "rejected a wrong bearer token" in caplog.text
    assert "wrong-secret-value" not in caplog.text and TOKEN not in caplog.text


def test_tokens_from_a_file_one_per_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from api_harness import ApiServer

    from canary.api.app import AppContext, create_app
    from canary.store.database import connect, sessions

    tokens = tmp_path / "tokens"
    tokens.write_text("first-token\n\n  second-token  \n")
    config = make_config(f"http://127.0.0.1:{free_port()}")
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"api_token_file": str(tokens)})}
    )
    app = create_app(
        AppContext(config=config, sessions=sessions(connect(migrated_sqlite(tmp_path))))
    )
    with ApiServer(app) as server:
        codes = [
            httpx.get(
                server.url + "/api/v1/status", headers={"Authorization": f"Bearer {t}"}
            ).status_code
            for t in ("first-token", "second-token", "third-token")
        ]
    assert codes == [200, 200, 401]


def test_insecure_no_auth_context_serves_without_tokens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = serve(
        migrated_sqlite(tmp_path), make_config(f"http://127.0.0.1:{free_port()}"), auth=False
    )
    try:
        assert httpx.get(server.url + "/api/v1/canaries").status_code == 200
    finally:
        server.stop()


def test_token_matches_whole_tokens_only() -> None:
    assert token_matches("abc", ["x", "abc"])
    assert not token_matches("ab", ["abc"]) and not token_matches("abcd", ["abc"])
    assert not token_matches("", ["abc"]) and not token_matches("abc", [])


def test_serve_refuses_without_token_or_schema(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CANARY_API_TOKEN", raising=False)
    monkeypatch.delenv("CANARY_CONFIG", raising=False)
    migrated = migrated_sqlite(tmp_path)
    assert main(["--database-url", migrated, "serve"]) == 2
    assert "no API token configured" in capsys.readouterr().err

    assert (
        main(
            ["--database-url", migrated, "serve", "--insecure-no-auth", "--listen", "0.0.0.0:8080"]
        )
        == 2
    )
    assert "local use" in capsys.readouterr().err

    monkeypatch.setenv("CANARY_API_TOKEN", "t")
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["--database-url", empty, "serve"]) == 3
    assert "canary db upgrade" in capsys.readouterr().err
