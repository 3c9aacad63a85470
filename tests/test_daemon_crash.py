"""(d) kill -9 of a `canary run` subprocess at random points of its rounds.

After each kill a new daemon is started on the same database: it must resume the
analysis from the database, reconcile a pending action against the VirtualService's
actual weights, and never apply a step twice. Every analysis must end promoted with
exactly the writes 10, 20, 50, 100 on its VirtualService.

The number of kills per database is `CANARY_CRASH_TRIALS` (default 4 here; the full
20 with `CANARY_CRASH_TRIALS=20`, see bench/README or docs/daemon.md).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from daemon_stack import (
    DaemonProcess,
    add_virtual_service,
    canary_entry,
    config_dict,
    kubeconfig,
    make_config,
    vs_weight_writes,
    wait_until,
    write_toml,
)
from kubeapi import KubeApiServer
from prometheus_harness import LiveStack

from canary import control
from canary.store.analyses import load_analysis_full
from canary.store.database import connect
from canary.store.database import sessions as make_sessions

TRIALS = int(os.environ.get("CANARY_CRASH_TRIALS", "4"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60 + 25 * TRIALS)]


def _finished(sessions, analysis_id: str):  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        pending = [a for a in analysis.actions if a.state == "pending"]
        return analysis.status != "running" and not pending


def test_kill_9_at_random_points_never_applies_a_step_twice(
    traffic: LiveStack, kube_api: KubeApiServer, tmp_path: Path, migrated_url: str
) -> None:
    seed = int(os.environ.get("CANARY_CRASH_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    names = [f"app{i}" for i in range(TRIALS)]
    for name in names:
        add_virtual_service(kube_api, name)
    canaries = [
        canary_entry(name, promotion="no-failure", steps=((10, 1), (20, 1), (50, 1)))
        for name in names
    ]
    raw = config_dict(traffic.prometheus.url, kubeconfig(kube_api, tmp_path), canaries)
    config = make_config(raw)
    config_path = write_toml(raw, tmp_path / "canary.toml")
    engine = connect(migrated_url)
    sessions = make_sessions(engine)
    on_postgres = migrated_url.startswith("postgresql")

    kills, analyses, log_path = 0, [], tmp_path / "daemon.log"
    for name in names:
        if kills >= TRIALS:
            break
        analysis_id = control.start_analysis(sessions, config, name)
        analyses.append((name, analysis_id))
        while not _finished(sessions, analysis_id):
            daemon = DaemonProcess(
                config_path, migrated_url, log_path, lease_ttl=2, sync_interval=0.5
            )
            if kills < TRIALS:
                # Anywhere from start-up to several rounds in (a round every 1 s).
                time.sleep(rng.uniform(0.5, 7.0))
                daemon.kill()
                kills += 1
                continue
            try:
                wait_until(
                    lambda a=analysis_id: _finished(sessions, a),
                    40,
                    what=f"{analysis_id} (seed {seed})",
                )
            finally:
                assert daemon.terminate() == 0
    if kills < TRIALS or not analyses:
        pytest.fail(f"only {kills} kills happened")  # pragma: no cover
    # Let the last analysis (if the final kill hit it) finish under a fresh daemon.
    last = analyses[-1][1]
    if not _finished(sessions, last):
        daemon = DaemonProcess(config_path, migrated_url, log_path, lease_ttl=2, sync_interval=0.5)
        try:
            wait_until(lambda: _finished(sessions, last), 40, what=f"{last} (seed {seed})")
        finally:
            assert daemon.terminate() == 0

    for name, analysis_id in analyses:
        with sessions.begin() as session:
            analysis = load_analysis_full(session, analysis_id)
            context = f"seed {seed}, {name} ({analysis_id}) on {'pg' if on_postgres else 'sqlite'}"
            assert analysis.status == "promoted", context
            assert vs_weight_writes(kube_api, name) == [10, 20, 50, 100], context
            indexes = [r.index for r in analysis.rounds]
            assert indexes == list(range(len(indexes))), context  # no round lost or doubled
            assert [a.state for a in analysis.actions] == ["done"] * 4, context
            assert [a.to_weight for a in analysis.actions] == [10, 20, 50, 100], context
    engine.dispose()
