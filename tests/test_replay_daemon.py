"""The real daemon (a live Prometheus, the local Kubernetes API server), then replay.

Rollouts are run by `canary.daemon.Daemon` exactly as in tests/test_daemon_e2e.py; the
test then replays what they stored and expects every recorded decision back.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_stack import add_virtual_service, canary_entry, config_dict, kubeconfig, make_config
from kubeapi import KubeApiServer
from prometheus_harness import (
    LiveStack,
)

from canary import control
from canary.cli import main
from canary.commands._root import use_worker_threads
from canary.daemon import Daemon
from canary.model import AnalysisStatus
from canary.store.analyses import get_analysis, pending_actions
from canary.store.database import connect, sessions

pytestmark = pytest.mark.timeout(180)


async def _run_until_final(config: Any, factory: Any, analysis_id: str, timeout: float) -> str:
    daemon = Daemon(config, factory, sync_interval=0.5, lease_ttl=10)
    use_worker_threads(factory, daemon=True)  # as `canary run` does
    task = asyncio.create_task(daemon.run())
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with factory() as session:
                status = get_analysis(session, analysis_id).status
                pending = pending_actions(session, analysis_id)
            if AnalysisStatus(status) is not AnalysisStatus.RUNNING and not pending:
                return status
            await asyncio.sleep(0.25)
        raise AssertionError(f"analysis {analysis_id} still {status}")
    finally:
        daemon.stop()
        await asyncio.wait_for(task, timeout=20)


async def test_replay_reproduces_daemon_rollouts(
    live_stack: LiveStack,
    kube_api: KubeApiServer,
    tmp_path: Path,
    migrated_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_virtual_service(kube_api, "app")
    config = make_config(
        config_dict(
            live_stack.prometheus.url, kubeconfig(kube_api, tmp_path), [canary_entry("app")]
        )
    )
    factory = sessions(connect(migrated_url))
    made: dict[str, str] = {}
    try:
        for arm in ("canary", "baseline"):
            live_stack.exporter.configure(arm, rate=200.0, error_ratio=0.1, latency_ms=20.0)
        made["healthy"] = control.start_analysis(factory, config, "app", revision="v2")
        assert await _run_until_final(config, factory, made["healthy"], 90) == "promoted"

        live_stack.exporter.configure("canary", error_ratio=0.5)
        made["broken"] = control.start_analysis(factory, config, "app", revision="v3")
        assert await _run_until_final(config, factory, made["broken"], 90) == "rolled_back"
    finally:
        live_stack.reset_traffic()

    for name, analysis_id in made.items():
        code = await asyncio.to_thread(
            main, ["--database-url", migrated_url, "replay", analysis_id, "--json"]
        )
        body = json.loads(capsys.readouterr().out)
        assert code == (1 if body["replayed"]["verdict"] == "fail" else 0)
        assert body["mode"] == "engine"
        assert body["differences"] == [], (name, body["differences"])
        assert body["replayed"] == body["recorded"]
        expected = "promote" if name == "healthy" else "rollback"
        assert body["replayed"]["decision"] == expected

    code = await asyncio.to_thread(
        main, ["--database-url", migrated_url, "show", made["broken"], "--json"]
    )
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["status"] == "rolled_back"
    assert shown["rounds"][-1]["actions"][0]["kind"] == "rollback"
    assert shown["rounds"][-1]["actions"][0]["state"] == "done"
