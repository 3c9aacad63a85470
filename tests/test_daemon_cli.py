"""`canary run` as operators run it: one daemon per SQLite file, SIGTERM, in-process API."""

from __future__ import annotations

import time
from pathlib import Path

import browser
import httpx
import pytest
from daemon_stack import (
    DaemonProcess,
    add_virtual_service,
    canary_entry,
    config_dict,
    kubeconfig,
    make_config,
    wait_until,
    write_toml,
)
from kubeapi import KubeApiServer
from prometheus_harness import LiveStack, free_port
from sqlalchemy import select

from canary import control
from canary.store.analyses import load_analysis_full
from canary.store.database import connect, migrate
from canary.store.database import sessions as make_sessions
from canary.store.tables import Lease

pytestmark = pytest.mark.timeout(120)


def _setup(kube_api: KubeApiServer, tmp_path: Path, prometheus_url: str, url: str, **sections):  # type: ignore[no-untyped-def]
    add_virtual_service(kube_api, "app")
    raw = config_dict(
        prometheus_url,
        kubeconfig(kube_api, tmp_path),
        [canary_entry("app", steps=((10, 60),))],
        **sections,
    )
    engine = connect(url)
    migrate(engine)
    return make_config(raw), write_toml(raw, tmp_path / "canary.toml"), make_sessions(engine)


def _rounds(sessions, analysis_id: str) -> list[int]:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        return [r.index for r in load_analysis_full(session, analysis_id).rounds]


def test_one_daemon_per_sqlite_database_and_a_clean_sigterm(
    traffic: LiveStack, kube_api: KubeApiServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    config, path, sessions = _setup(kube_api, tmp_path, traffic.prometheus.url, url)
    analysis_id = control.start_analysis(sessions, config, "app")
    first = DaemonProcess(path, url, tmp_path / "first.log")
    try:
        wait_until(lambda: len(_rounds(sessions, analysis_id)) >= 2, 30, what="rounds")
        second = DaemonProcess(path, url, tmp_path / "second.log")
        assert second.process.wait(timeout=30) == 3
        message = second.log()
        assert "another canary daemon (pid" in message
        assert f"{first.process.pid}" in message
        assert "use PostgreSQL for several replicas" in message
    finally:
        started = time.monotonic()
        assert first.terminate() == 0
    assert time.monotonic() - started < 8  # within the shutdown deadline
    assert "daemon sqlite-daemon stopped" in first.log()
    with sessions.begin() as session:
        assert session.scalars(select(Lease)).all() == []  # leases released
    rounds = _rounds(sessions, analysis_id)
    assert rounds == list(range(len(rounds)))
    # The lock went with the process: a new daemon starts and continues the analysis.
    third = DaemonProcess(path, url, tmp_path / "third.log")
    try:
        wait_until(lambda: len(_rounds(sessions, analysis_id)) > len(rounds), 30, what="resume")
    finally:
        assert third.terminate() == 0


def test_run_serves_the_http_api_in_process(
    traffic: LiveStack, kube_api: KubeApiServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    port = free_port()
    config, path, sessions = _setup(
        kube_api,
        tmp_path,
        traffic.prometheus.url,
        url,
        server={"listen": f"127.0.0.1:{port}", "api_token_file": str(token)},
    )
    analysis_id = control.start_analysis(sessions, config, "app")
    daemon = DaemonProcess(path, url, tmp_path / "daemon.log", api=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: len(_rounds(sessions, analysis_id)) >= 3, 40, what="rounds")

        def metrics() -> str | None:
            try:
                response = httpx.get(f"{base}/metrics", timeout=2)
            except httpx.HTTPError:
                return None
            return response.text if response.status_code == 200 else None

        text = wait_until(metrics, 20, what="/metrics")
        assert 'canary_rounds_total{canary="app",outcome="continue"}' in text
        assert 'canary_weight_percent{canary="app"} 10.0' in text
        assert "canary_round_lateness_seconds_count" in text
        status = httpx.get(
            f"{base}/api/v1/status", headers={"Authorization": "Bearer s3cret"}, timeout=5
        )
        assert status.status_code == 200, status.text
        assert analysis_id in status.text
        # The report pages are served by `run` too, opened from a token link.
        page = browser.load(f"{base}/analyses/{analysis_id}?token=s3cret")
        assert analysis_id in page.dom and 'class="headline"' in page.dom and page.console == []
        # `run` moves traffic: readiness probes the Kubernetes API (here, the stand-in).
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.json()["checks"]["kubernetes"] == "ok", ready.text
    finally:
        assert daemon.terminate() == 0
