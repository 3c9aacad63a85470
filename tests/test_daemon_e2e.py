"""The daemon end to end: a real Prometheus scraping a live Istio-like exporter, the
local Kubernetes API server, SQLite and PostgreSQL, 1 s rounds and short steps.

(a) a healthy canary walks 10 -> 20 -> 50 -> 100 and is promoted only on PASS evidence;
(b) a canary whose error rate rises midway is rolled back within a few rounds;
(a) and (b) run twice: on an Istio VirtualService and on a Gateway API HTTPRoute, with
the same steps, writes, rounds and notifications; (b) also runs in ambient mode (an
HTTPRoute, waypoint-shaped metrics, a waypoint restart during the analysis);
(c) Prometheus stopped midway: error rounds, no promotion, halt with the reason.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_stack import (
    WebhookReceiver,
    add_route,
    add_virtual_service,
    canary_entry,
    canary_weight,
    config_dict,
    kubeconfig,
    make_config,
    vs_weight_writes,
)
from kubeapi import KubeApiServer
from prometheus_harness import (
    WAYPOINTS,
    LiveStack,
    live_prometheus,
    wait_for_series,
)

from canary import control
from canary.commands._root import use_worker_threads
from canary.daemon import Daemon
from canary.model import AnalysisStatus
from canary.store.analyses import load_analysis_full
from canary.store.tables import utcnow

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def traffic(live_stack: LiveStack) -> Iterator[LiveStack]:
    """Both arms at 200 req/s with 10% errors (events every round: evidence can grow)."""
    for arm in ("canary", "baseline"):
        live_stack.exporter.configure(arm, rate=200.0, error_ratio=0.1, latency_ms=20.0)
    yield live_stack
    live_stack.reset_traffic()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


class Running:
    """A daemon running in this event loop."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        use_worker_threads(daemon.sessions, daemon=True)  # as `canary run` does
        self.task = asyncio.create_task(daemon.run())

    async def stop(self) -> None:
        self.daemon.stop()
        await asyncio.wait_for(self.task, timeout=20)


@pytest.fixture
async def start_daemon() -> AsyncIterator[Any]:
    running: list[Running] = []

    def start(config, sessions) -> Running:  # type: ignore[no-untyped-def]
        r = Running(Daemon(config, sessions, sync_interval=0.5, lease_ttl=10))
        running.append(r)
        return r

    yield start
    for r in running:
        if not r.task.done():
            await r.stop()


MESHES = pytest.mark.parametrize("mesh", ["VirtualService", "HTTPRoute"])


def _setup(
    kube_api: KubeApiServer,
    tmp_path: Path,
    prometheus_url: str,
    hook_url: str,
    mesh: str = "VirtualService",
    **canary: Any,
):  # type: ignore[no-untyped-def]
    add_route(kube_api, "app", mesh, canary.get("namespace", "live"))
    raw = config_dict(
        prometheus_url,
        kubeconfig(kube_api, tmp_path),
        [canary_entry("app", mesh=mesh, **canary)],
        webhook=[{"url": hook_url, "retries": 1, "timeout": 2}],
    )
    return make_config(raw)


async def _wait_status(sessions, analysis_id: str, timeout: float, until) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions.begin() as session:
            analysis = load_analysis_full(session, analysis_id)
            session.expunge_all()
        if until(analysis):
            return analysis
        await asyncio.sleep(0.25)
    raise AssertionError(f"analysis {analysis_id} stuck: {analysis.status} {analysis.reason}")


def _final(analysis) -> bool:  # type: ignore[no-untyped-def]
    return AnalysisStatus(analysis.status) is not AnalysisStatus.RUNNING and not any(
        a.state == "pending" for a in analysis.actions
    )


@MESHES
async def test_healthy_canary_walks_the_steps_and_is_promoted_on_pass_evidence(
    traffic: LiveStack,
    kube_api: KubeApiServer,
    tmp_path: Path,
    sessions,
    hook,
    start_daemon,
    mesh: str,
) -> None:
    config = _setup(kube_api, tmp_path, traffic.prometheus.url, hook.url, mesh)
    analysis_id = control.start_analysis(sessions, config, "app", revision="v2")
    start_daemon(config, sessions)

    analysis = await _wait_status(sessions, analysis_id, 60, _final)

    assert analysis.status == "promoted", analysis.reason
    assert analysis.verdict == "pass"
    assert vs_weight_writes(kube_api, "app", mesh=mesh) == [10, 20, 50, 100]
    assert canary_weight(kube_api, "app", mesh=mesh) == 100
    promote = [r for r in analysis.rounds if r.decision == "promote"]
    assert len(promote) == 1
    # Promotion happened on a round whose overall verdict and every metric were PASS,
    # and only after the last step (50%) had been reached.
    assert promote[0].verdict == "pass"
    assert {m.verdict for m in promote[0].results} == {"pass"}
    assert promote[0].weight == 100
    earlier = [r for r in analysis.rounds if r.index < promote[0].index]
    assert any(r.weight == 50 for r in earlier)
    assert analysis.rounds[0].index == 0 and analysis.rounds[0].verdict == "running"  # warm-up
    assert all(a.state == "done" for a in analysis.actions)
    await asyncio.sleep(0.5)
    assert hook.events()[:1] == ["started"]
    assert hook.events().count("advanced") == 2
    assert hook.events()[-1] == "promoted"


@MESHES
async def test_error_rate_rising_midway_rolls_back_to_zero(
    traffic: LiveStack,
    kube_api: KubeApiServer,
    tmp_path: Path,
    sessions,
    hook,
    start_daemon,
    mesh: str,
) -> None:
    config = _setup(
        kube_api,
        tmp_path,
        traffic.prometheus.url,
        hook.url,
        mesh,
        steps=((10, 2), (20, 30), (50, 30)),
    )
    analysis_id = control.start_analysis(sessions, config, "app")
    start_daemon(config, sessions)
    reached = await _wait_status(sessions, analysis_id, 30, lambda a: a.weight == 20)
    rounds_before = len(reached.rounds)
    traffic.exporter.configure("canary", error_ratio=0.5)

    analysis = await _wait_status(sessions, analysis_id, 30, _final)

    assert analysis.status == "rolled_back"
    assert analysis.verdict == "fail"
    assert "errors" in (analysis.reason or "")
    # Within a few rounds of the jump (the judge's evidence restarts at every round).
    assert len(analysis.rounds) - rounds_before <= 10
    assert canary_weight(kube_api, "app", mesh=mesh) == 0
    assert vs_weight_writes(kube_api, "app", mesh=mesh) == [10, 20, 0]
    events = [e for e in kube_api.events("live") if e["involvedObject"]["name"] == "app"]
    assert events[-1]["reason"] == "CanaryRolledBack"
    assert events[-1]["involvedObject"]["kind"] == mesh
    await asyncio.sleep(0.5)
    assert hook.events()[-1] == "rolled_back"
    assert hook.bodies[-1]["weight"] == 0 and hook.bodies[-1]["analysisId"] == analysis_id
    # The message says it in words: the effect with its interval, the decided evidence.
    words = "\n".join(hook.bodies[-1]["evidence"])
    assert re.search(
        r"errors: fail — error odds (at least )?\d+\.\d(–\d+(\.\d+)?)?x baseline", words
    ), words
    assert "FAIL evidence 100% — decided" in words


async def test_prometheus_stopped_midway_halts_after_the_limit_without_promotion(
    traffic: LiveStack,
    kube_api: KubeApiServer,
    tmp_path: Path,
    sessions,
    hook,
    start_daemon,
) -> None:
    prometheus = live_prometheus([traffic.exporter], tmp_path / "prom")
    try:
        wait_for_series(prometheus, "istio_requests_total")
        config = _setup(
            kube_api,
            tmp_path,
            prometheus.url,
            hook.url,
            steps=((10, 2), (20, 3), (50, 3)),
            max_failed_rounds=3,
        )
        analysis_id = control.start_analysis(sessions, config, "app")
        start_daemon(config, sessions)
        await _wait_status(sessions, analysis_id, 30, lambda a: a.weight == 20)
    finally:
        prometheus.stop()

    analysis = await _wait_status(sessions, analysis_id, 30, _final)

    assert analysis.status == "halted"
    assert "3 consecutive rounds without data from Prometheus" in analysis.reason
    errors = [r for r in analysis.rounds if r.error]
    assert len(errors) == 3 and all(r.decision in ("continue", "hold") for r in errors)
    assert errors[-1].index == analysis.rounds[-1].index
    assert not any(r.decision == "promote" for r in analysis.rounds)
    assert canary_weight(kube_api, "app") in (20, 50)  # halted where it stood
    assert analysis.weight == canary_weight(kube_api, "app")
    await asyncio.sleep(0.5)
    assert hook.events()[-1] == "halted"
    assert "Prometheus" in hook.bodies[-1]["reason"]


async def test_auto_start_when_the_canary_revision_label_changes(
    traffic: LiveStack, kube_api: KubeApiServer, tmp_path: Path, sessions, hook, start_daemon
) -> None:
    config = _setup(
        kube_api, tmp_path, traffic.prometheus.url, hook.url, auto_start=True, steps=((10, 60),)
    )
    # The previous rollout analysed v1; the canary pods now serve v2 (exporter label).
    previous = control.start_analysis(sessions, config, "app", revision="v1")
    control.abort_analysis(sessions, previous)
    start_daemon(config, sessions)

    def started() -> Any:
        with sessions.begin() as session:
            return control.active_analysis(session, "app")

    deadline = time.monotonic() + 20
    while (analysis := started()) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    assert analysis is not None, "no analysis was auto-started"
    assert analysis.revision == "v2" and analysis.id != previous
    await _wait_status(sessions, analysis.id, 20, lambda a: len(a.rounds) >= 2)
    assert canary_weight(kube_api, "app") == 10


async def test_a_step_lasts_its_duration_from_when_its_weight_is_applied(
    traffic: LiveStack, kube_api: KubeApiServer, tmp_path: Path, sessions, hook, start_daemon
) -> None:
    """The Kubernetes API answers 404 (no VirtualService yet) for longer than the first
    step lasts, then the VirtualService appears: the first step still gets its full
    duration at 10%. The same after a pause and a resume."""
    raw = config_dict(
        traffic.prometheus.url,
        kubeconfig(kube_api, tmp_path),
        [canary_entry("app", steps=((10, 4), (20, 4), (50, 60)))],
    )
    config = make_config(raw)
    analysis_id = control.start_analysis(sessions, config, "app")
    start_daemon(config, sessions)
    await asyncio.sleep(6)  # the start action meets 404 meanwhile
    pending = await _wait_status(sessions, analysis_id, 1, lambda a: True)
    assert [(a.kind, a.state) for a in pending.actions] == [("start", "pending")]
    assert "404" in (pending.actions[0].error or "") or "not found" in (
        pending.actions[0].error or ""
    )
    add_virtual_service(kube_api, "app")

    at_20 = await _wait_status(
        sessions,
        analysis_id,
        30,
        lambda a: any(x.kind == "advance" and x.state == "done" for x in a.actions),
    )
    start, advance = at_20.actions[0], at_20.actions[1]
    assert (advance.created_at - start.done_at).total_seconds() >= 4
    assert vs_weight_writes(kube_api, "app") == [10, 20]

    control.pause_analysis(sessions, analysis_id)
    await asyncio.sleep(5)  # longer than the step: a paused step gathers no evidence
    resumed_at = utcnow()
    resumed = control.resume_analysis(sessions, analysis_id)
    assert resumed.status is AnalysisStatus.RUNNING

    at_50 = await _wait_status(
        sessions,
        analysis_id,
        30,
        lambda a: sum(x.kind == "advance" and x.state == "done" for x in a.actions) == 2,
    )
    second = [x for x in at_50.actions if x.kind == "advance"][1]
    assert second.to_weight == 50
    assert (second.created_at - resumed_at).total_seconds() >= 4
    assert vs_weight_writes(kube_api, "app") == [10, 20, 50]


async def test_ambient_canary_on_an_http_route_rolls_back_through_a_waypoint_restart(
    ambient_stack: LiveStack,
    kube_api: KubeApiServer,
    tmp_path: Path,
    sessions,
    hook,
    start_daemon,
) -> None:
    stack = ambient_stack
    for arm in ("canary", "baseline"):
        stack.exporter.configure(arm, rate=200.0, error_ratio=0.1, latency_ms=20.0)
    try:
        config = _setup(
            kube_api,
            tmp_path,
            stack.prometheus.url,
            hook.url,
            "HTTPRoute",
            namespace=stack.namespace,
            reporter="waypoint",
            scrape_interval=1,
            steps=((10, 2), (20, 30), (50, 30)),
        )
        analysis_id = control.start_analysis(sessions, config, "app")
        start_daemon(config, sessions)
        reached = await _wait_status(sessions, analysis_id, 30, lambda a: a.weight == 20)
        rounds_before = len(reached.rounds)
        stack.exporter.restart_waypoint(WAYPOINTS[0])  # both arms' series start over
        stack.exporter.configure("canary", error_ratio=0.5)

        analysis = await _wait_status(sessions, analysis_id, 30, _final)
    finally:
        stack.reset_traffic()

    assert analysis.status == "rolled_back", analysis.reason
    assert analysis.verdict == "fail" and "errors" in (analysis.reason or "")
    assert len(analysis.rounds) - rounds_before <= 10
    assert not any(r.error for r in analysis.rounds), [r.error for r in analysis.rounds]
    assert canary_weight(kube_api, "app", namespace=stack.namespace, mesh="HTTPRoute") == 0
    assert vs_weight_writes(kube_api, "app", namespace=stack.namespace, mesh="HTTPRoute") == [
        10,
        20,
        0,
    ]
