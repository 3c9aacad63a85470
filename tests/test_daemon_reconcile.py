"""Reconciling pending actions against the VirtualService's actual weights.

The daemon's sync is driven directly (no scheduler, no rounds), against the local
Kubernetes API server: an action is applied once, an action already applied before
a crash is only marked done, a rollback is carried out even over drift, any
other action meeting drift halts the analysis with the reason, and an action a round
decided but could not write is announced by the reconcile with that round's evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from daemon_stack import (
    WebhookReceiver,
    add_virtual_service,
    canary_entry,
    canary_weight,
    config_dict,
    kubeconfig,
    make_config,
    vs_weight_writes,
)
from kubeapi import KubeApiServer

from canary import control, telemetry
from canary.commands._root import use_worker_threads
from canary.daemon import Daemon
from canary.metrics.simulated import SimulatedCanary, SimulatedMesh
from canary.metrics.simulated_traffic import ArmModel
from canary.store.analyses import load_analysis_full


@pytest.fixture
def setup(kube_api: KubeApiServer, tmp_path: Path, sessions):  # type: ignore[no-untyped-def]
    add_virtual_service(kube_api, "app")
    raw = config_dict("http://127.0.0.1:9", kubeconfig(kube_api, tmp_path), [canary_entry("app")])
    config = make_config(raw)
    return config, Daemon(config, sessions)


def _analysis(sessions, analysis_id: str):  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        session.expunge_all()
        return analysis


async def test_a_pending_action_is_applied_once(setup, sessions, kube_api) -> None:
    config, daemon = setup
    analysis_id = control.start_analysis(sessions, config, "app")
    await daemon.sync()
    await daemon.sync()
    assert vs_weight_writes(kube_api, "app") == [10]
    assert [a.state for a in _analysis(sessions, analysis_id).actions] == ["done"]
    await daemon.aclose()


async def test_an_action_applied_before_a_crash_is_only_marked_done(
    setup, sessions, kube_api
) -> None:
    config, daemon = setup
    analysis_id = control.start_analysis(sessions, config, "app")
    action = _analysis(sessions, analysis_id).actions[0]
    # The previous daemon wrote the weights, then died before marking the action.
    await daemon.router(config.canary[0]).set_weights(
        action.to_weight, analysis=analysis_id, step=action.id
    )
    assert vs_weight_writes(kube_api, "app") == [10]
    await daemon.sync()
    assert vs_weight_writes(kube_api, "app") == [10]  # not applied a second time
    assert [a.state for a in _analysis(sessions, analysis_id).actions] == ["done"]
    await daemon.aclose()


async def test_a_rollback_is_never_skipped_even_over_drift(setup, sessions, kube_api) -> None:
    config, daemon = setup
    analysis_id = control.start_analysis(sessions, config, "app")
    await daemon.sync()
    kube_api.modify(  # someone edits the weights by hand
        "networking.istio.io",
        "virtualservices",
        "live",
        "app",
        lambda vs: (
            vs["spec"]["http"][1]["route"][0].update(weight=70)
            or vs["spec"]["http"][1]["route"][1].update(weight=30)
        ),
    )
    control.abort_analysis(sessions, analysis_id)
    await daemon.sync()
    assert canary_weight(kube_api, "app") == 0
    analysis = _analysis(sessions, analysis_id)
    assert analysis.status == "aborted"
    assert [a.state for a in analysis.actions] == ["done", "done"]
    await daemon.aclose()


async def test_a_promotion_meeting_drift_halts_with_the_reason(setup, sessions, kube_api) -> None:
    config, daemon = setup
    analysis_id = control.start_analysis(sessions, config, "app")
    await daemon.sync()
    kube_api.modify(
        "networking.istio.io",
        "virtualservices",
        "live",
        "app",
        lambda vs: (
            vs["spec"]["http"][1]["route"][0].update(weight=70)
            or vs["spec"]["http"][1]["route"][1].update(weight=30)
        ),
    )
    control.promote_analysis(sessions, analysis_id)
    drift_before = telemetry.REGISTRY.get_sample_value("canary_traffic_drift_total") or 0.0
    await daemon.sync()
    assert canary_weight(kube_api, "app") == 30  # not overwritten
    # counted for the dashboard and the CanaryTrafficDrift alert
    assert telemetry.REGISTRY.get_sample_value("canary_traffic_drift_total") == drift_before + 1
    analysis = _analysis(sessions, analysis_id)
    assert analysis.status == "halted"
    assert "drift" in analysis.reason and "someone else changed the weights" in analysis.reason
    assert [a.state for a in analysis.actions] == ["done", "failed"]
    await daemon.aclose()


async def test_a_sync_abandoned_at_shutdown_logs_no_error(setup, sessions, caplog) -> None:
    """SIGTERM while a sync waits on a slow database: the sync is abandoned quietly
    (the next start syncs again), not reported as a failed job with a traceback."""
    import asyncio
    import logging
    import threading
    import time

    from sqlalchemy.orm import sessionmaker

    class SlowDatabase(sessionmaker):  # type: ignore[type-arg]
        """Every transaction starts a second late once `slow` is set."""

        slow = False
        waiting = threading.Event()  # a transaction is held up by the slow database

        def begin(self):  # type: ignore[no-untyped-def]
            if self.slow:
                self.waiting.set()
                time.sleep(1.0)
            return super().begin()

    config, _ = setup
    database = SlowDatabase(**sessions.kw)
    daemon = Daemon(config, database, sync_interval=0.1, shutdown_timeout=0.2)
    caplog.set_level(logging.INFO)
    use_worker_threads(daemon.sessions, daemon=True)  # as `canary run` does
    task = asyncio.create_task(daemon.run())
    await asyncio.sleep(0.5)  # started, first sync done, the sync job scheduled
    database.slow = True
    # a scheduled sync is now waiting on the database
    for _ in range(100):  # polled: the daemon's one worker thread must stay free
        if database.waiting.is_set():
            break
        await asyncio.sleep(0.05)
    assert database.waiting.is_set(), "no sync reached the slow database"
    daemon.stop()
    await asyncio.wait_for(task, timeout=10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


async def test_a_rollback_finished_by_a_reconcile_carries_its_rounds_evidence(
    kube_api: KubeApiServer, tmp_path: Path, sessions, hook: WebhookReceiver
) -> None:
    """The round that decided a rollback could not write it (the API server failing);
    the reconcile that carries it out announces it with that round and its evidence."""
    add_virtual_service(kube_api, "app")
    raw = config_dict(
        "http://127.0.0.1:9",
        kubeconfig(kube_api, tmp_path),
        [canary_entry("app")],
        webhook=[{"url": hook.url, "retries": 0, "timeout": 5}],
    )
    raw["kubernetes"]["retries"] = 0
    config = make_config(raw)
    bad = SimulatedCanary(canary=ArmModel(error_rate=0.5), baseline=ArmModel(error_rate=0.01))
    router_weight = {"app": 0}

    async def weight_of(name: str) -> int:
        return router_weight[name]

    daemon = Daemon(config, sessions, source=SimulatedMesh({"app": bad}, weight_of, speed=1.0))
    analysis_id = control.start_analysis(sessions, config, "app")
    await daemon.sync()  # the start (10 %)
    router_weight["app"] = canary_weight(kube_api, "app")
    start = datetime.now(UTC)
    await daemon.run_round(analysis_id, start)  # warm-up
    kube_api.fail(500, count=1, method="PATCH")
    await daemon.run_round(analysis_id, start + timedelta(seconds=30))
    analysis = _analysis(sessions, analysis_id)
    assert analysis.status == "rolled_back"
    assert [(a.kind, a.state) for a in analysis.actions] == [
        ("start", "done"),
        ("rollback", "pending"),
    ]

    await daemon.sync()  # the reconcile carries the rollback out
    assert canary_weight(kube_api, "app") == 0
    await daemon.aclose()  # waits for the webhooks in flight
    rolled_back = [b for b in hook.bodies if b["event"] == "rolled_back"]
    assert len(rolled_back) == 1
    assert rolled_back[0]["round"] == 1
    assert any(line.startswith("errors") for line in rolled_back[0]["evidence"])
