"""The report pages as users reach them: `canary serve` in a subprocess, headless
Chromium following the printed kind of URL (`/analyses?token=...`), and the session
cookie that replaces the token."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import browser
import httpx
import pytest
from api_fixtures import SCENARIOS, TOKEN, make_config, migrated_sqlite, serve
from prometheus_harness import free_port

from canary.api import sessions

AUTH = {"Authorization": f"Bearer {TOKEN}"}

CONFIG = """
[prometheus]
url = "{prometheus}"
retries = 0

[server]
listen = "127.0.0.1:{port}"

[defaults]
interval = "60s"

[[canary]]
name = "steady"
namespace = "shop"
[canary.traffic]
virtual_service = "steady"
canary = {{ host = "steady-canary" }}
stable = {{ host = "steady-stable" }}
[canary.arms.canary]
match = {{ destination_workload = "steady" }}
[canary.arms.baseline]
match = {{ destination_workload = "steady" }}
"""


@pytest.fixture(scope="module")
def served(backfilled, tmp_path_factory) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """`canary serve` as a user starts it; yields (base URL, an Argo analysis id)."""
    tmp = tmp_path_factory.mktemp("pages")
    port = free_port()
    config = tmp / "canary.toml"
    config.write_text(CONFIG.format(prometheus=backfilled.prometheus.url, port=port))
    env = {**os.environ, "CANARY_API_TOKEN": TOKEN, "CANARY_DATABASE_URL": ""}
    base = [sys.executable, "-m", "canary", "--config", str(config)]
    base += ["--database-url", f"sqlite:///{tmp / 'canary.db'}"]
    subprocess.run([*base, "db", "upgrade"], check=True, env=env, capture_output=True)
    log = (tmp / "serve.log").open("w")
    process = subprocess.Popen([*base, "serve"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp / "serve.log").read_text()
            assert time.monotonic() < deadline, "canary serve did not start"
            time.sleep(0.2)
        _, _, c_hash, s_hash = SCENARIOS["steady"]
        measured = httpx.get(
            url + "/api/v1/argo/measure",
            params={"canary": "steady", "canaryHash": c_hash, "stableHash": s_hash},
            headers=AUTH,
            timeout=30,
        )
        assert measured.status_code == 200, measured.text
        yield url, measured.json()["analysisId"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_pages_open_in_chromium_from_the_token_link(served) -> None:  # type: ignore[no-untyped-def]
    url, analysis_id = served
    index = browser.load(f"{url}/analyses?token={TOKEN}")
    assert "canary analyses" in index.dom and analysis_id in index.dom
    page = browser.load(f"{url}/analyses/{analysis_id}?token={TOKEN}")
    assert analysis_id in page.dom and 'class="headline"' in page.dom
    assert index.console == [] and page.console == []
    refused = browser.load(f"{url}/analyses")
    assert "open the page once with ?token=" in refused.dom and analysis_id not in refused.dom


def test_the_token_becomes_an_expiring_session_cookie(served) -> None:  # type: ignore[no-untyped-def]
    url, analysis_id = served
    first = httpx.get(f"{url}/analyses?status=running&token={TOKEN}")
    # The token leaves the URL: a redirect to the same page, authorized by the cookie.
    assert first.status_code == 303 and first.headers["location"] == "/analyses?status=running"
    cookie = first.headers["set-cookie"]
    value = first.cookies[sessions.COOKIE]
    assert TOKEN not in cookie and TOKEN not in value
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/analyses" in cookie.lower()
    assert "max-age=28800" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP, and no trusted proxy configured
    forwarded = httpx.get(f"{url}/analyses?token={TOKEN}", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in forwarded.headers["set-cookie"].lower()  # the header is not trusted

    jar = {sessions.COOKIE: value}
    assert httpx.get(f"{url}/analyses/{analysis_id}", cookies=jar).status_code == 200
    for bad in (value[:-2] + "00", f"1.{value.split('.', 1)[1]}", TOKEN, ""):
        refused = httpx.get(f"{url}/analyses", cookies={sessions.COOKIE: bad})
        assert refused.status_code == 401 and refused.json()["status"] == 401
    expires = int(value.split(".")[0])
    assert expires - time.time() == pytest.approx(28800, abs=60)
    assert not sessions.valid(value, [TOKEN], now=expires + 1)
    assert not sessions.valid(value, ["another-token"], now=time.time())


def test_secure_cookie_behind_a_trusted_tls_proxy(backfilled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(backfilled.prometheus.url)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"trust_forwarded_proto": True})}
    )
    server = serve(migrated_sqlite(tmp_path), config)
    try:
        tls = httpx.get(
            f"{server.url}/analyses?token={TOKEN}", headers={"X-Forwarded-Proto": "https"}
        )
        plain = httpx.get(f"{server.url}/analyses?token={TOKEN}")
    finally:
        server.stop()
    assert tls.status_code == 303 and "; secure" in tls.headers["set-cookie"].lower()
    assert plain.status_code == 303 and "secure" not in plain.headers["set-cookie"].lower()
