"""The shared round pipeline (`canary.rounds.judge_round`) against a real Prometheus."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from daemon_stack import canary_entry, config_dict, make_config
from prometheus_harness import LiveStack, free_port

from canary.config import PrometheusConfig
from canary.errors import StoredDataError
from canary.metrics.simulated import SimulatedCanary, SimulatedMesh
from canary.metrics.simulated_traffic import ArmModel
from canary.metrics.source import PrometheusSource
from canary.model import AnalysisStatus, Counts, Histogram, RoundData, Verdict
from canary.ports import Collected
from canary.rounds import (
    RoundConflict,
    ensure_analysis,
    judge_round,
    load_for_round,
    recorded_settings,
)
from canary.store.analyses import get_analysis, load_analysis_full
from canary.store.tables import utcnow


@pytest.fixture(scope="module")
def traffic(live_stack: LiveStack) -> Iterator[LiveStack]:
    for arm in ("canary", "baseline"):
        live_stack.exporter.configure(arm, rate=100.0, error_ratio=0.1)
    time.sleep(3.5)  # a few scrapes at these settings
    yield live_stack
    live_stack.reset_traffic()


def _canary(url: str, **settings):  # type: ignore[no-untyped-def]
    raw = config_dict(url, "/nonexistent", [canary_entry("app", **settings)])
    return make_config(raw).canary[0]


async def test_first_round_is_the_warm_up_then_rounds_are_judged_incrementally(
    traffic: LiveStack, sessions
) -> None:
    canary = _canary(traffic.prometheus.url)
    source = PrometheusSource(PrometheusConfig(url=traffic.prometheus.url))
    analysis_id = ensure_analysis(sessions, canary, key="argo/app/abc", source="argo")
    assert ensure_analysis(sessions, canary, key="argo/app/abc", source="argo") == analysis_id
    start = utcnow() - timedelta(seconds=0.5)  # a scraped instant
    try:
        warm = await judge_round(
            sessions, analysis_id, canary, source, start - timedelta(seconds=2)
        )
        first = await judge_round(sessions, analysis_id, canary, source, start)
        second = await judge_round(
            sessions, analysis_id, canary, source, start + timedelta(seconds=0)
        )
    finally:
        await source.aclose()

    assert warm.warmup and warm.index == 0 and warm.judgement is None
    assert warm.verdict is Verdict.RUNNING
    assert (first.index, second.index) == (1, 2) and not first.warmup
    errors_canary = first.data.canary["errors"]
    assert isinstance(errors_canary, Counts)
    # Two seconds of 100 req/s with 10% errors, exact integers from the counters.
    assert 100 <= errors_canary.total <= 300
    assert errors_canary.failed == pytest.approx(errors_canary.total * 0.1, abs=3)
    assert isinstance(first.data.baseline["latency"], Histogram)
    assert first.judgement is not None and set(first.judgement.metrics) == {"errors", "latency"}
    assert second.data.canary["errors"] == Counts(0, 0)  # same instant: nothing new

    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        assert [r.index for r in analysis.rounds] == [0, 1, 2]
        assert analysis.rounds[0].verdict == "running" and not analysis.rounds[0].results
        assert {m.metric for m in analysis.rounds[1].results} == {"errors", "latency"}
        assert analysis.judge_state and analysis.snapshot["version"]
        assert recorded_settings(analysis).steps == canary.steps


async def test_prometheus_down_gives_an_error_round_and_keeps_the_snapshot(
    traffic: LiveStack, sessions
) -> None:
    canary = _canary(traffic.prometheus.url)
    good = PrometheusSource(PrometheusConfig(url=traffic.prometheus.url))
    down = PrometheusSource(
        PrometheusConfig(url=f"http://127.0.0.1:{free_port()}", timeout=1, retries=0)
    )
    analysis_id = ensure_analysis(sessions, canary, key="k-down", source="analyze")
    try:
        await judge_round(sessions, analysis_id, canary, good, utcnow())
        with sessions.begin() as session:
            snapshot = dict(get_analysis(session, analysis_id).snapshot)
        failed = await judge_round(sessions, analysis_id, canary, down, utcnow())
    finally:
        await good.aclose()
        await down.aclose()

    assert failed.index == 1 and failed.error and "127.0.0.1" in failed.error
    assert failed.judgement is None and failed.verdict is Verdict.RUNNING
    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        assert analysis.snapshot == snapshot  # the next round's delta covers both intervals
        assert analysis.rounds[1].error == failed.error


async def test_a_malformed_stored_judge_state_is_refused_naming_the_analysis_and_field(
    traffic: LiveStack, sessions
) -> None:
    canary = _canary(traffic.prometheus.url)
    source = PrometheusSource(PrometheusConfig(url=traffic.prometheus.url))
    analysis_id = ensure_analysis(sessions, canary, key="k-bad-state", source="argo")
    try:
        await judge_round(sessions, analysis_id, canary, source, utcnow() - timedelta(seconds=2))
        await judge_round(sessions, analysis_id, canary, source, utcnow() - timedelta(seconds=1))
        with sessions.begin() as session:  # edited by hand
            analysis = get_analysis(session, analysis_id)
            analysis.judge_state = {**analysis.judge_state, "round": "one"}
        with pytest.raises(StoredDataError) as caught:
            await judge_round(sessions, analysis_id, canary, source, utcnow())
    finally:
        await source.aclose()

    assert str(caught.value) == (
        f"analysis {analysis_id}: judge_state.round: expected an integer, got 'one'"
    )
    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        assert [r.index for r in analysis.rounds] == [0, 1]  # nothing stored
        assert analysis.judge_state["round"] == "one"


async def test_concurrent_callers_record_a_round_once(traffic: LiveStack, sessions) -> None:
    canary = _canary(traffic.prometheus.url)
    source = PrometheusSource(PrometheusConfig(url=traffic.prometheus.url))
    analysis_id = ensure_analysis(sessions, canary, key="k-race", source="argo")
    try:
        await judge_round(sessions, analysis_id, canary, source, utcnow())
        # Both callers read the analysis before either records (as two replicas
        # answering Argo at once do); on a loaded machine one call could otherwise
        # finish before the other starts reading, and then rightly take round 2.
        loaded = load_for_round(sessions, analysis_id)
        results = await asyncio.gather(
            judge_round(sessions, analysis_id, canary, source, utcnow(), loaded=loaded),
            judge_round(sessions, analysis_id, canary, source, utcnow(), loaded=loaded),
            return_exceptions=True,
        )
    finally:
        await source.aclose()
    conflicts = [r for r in results if isinstance(r, RoundConflict)]
    assert len(conflicts) == 1, results
    with sessions.begin() as session:
        assert [r.index for r in load_analysis_full(session, analysis_id).rounds] == [0, 1]


async def test_the_final_round_without_evidence_is_inconclusive(
    traffic: LiveStack, sessions
) -> None:
    canary = _canary(traffic.prometheus.url, max_rounds=1)
    source = PrometheusSource(PrometheusConfig(url=traffic.prometheus.url))
    analysis_id = ensure_analysis(sessions, canary, key="k-final", source="analyze")
    try:
        await judge_round(sessions, analysis_id, canary, source, utcnow() - timedelta(seconds=2))
        last = await judge_round(sessions, analysis_id, canary, source, utcnow())
    finally:
        await source.aclose()
    assert last.final  # derived from max_rounds = 1
    assert last.verdict is Verdict.INCONCLUSIVE
    assert last.closing is not None
    with sessions.begin() as session:  # closed with the round that reached the budget
        analysis = load_analysis_full(session, analysis_id)
        assert analysis.status == AnalysisStatus.COMPLETED.value
        assert analysis.verdict == Verdict.INCONCLUSIVE.value
        assert analysis.finished_at == analysis.rounds[-1].recorded_at


async def test_an_ended_analysis_takes_no_more_rounds(traffic: LiveStack, sessions) -> None:
    """Once the budget has ended an analysis, a round — also from a caller that read it
    while it was still running — is refused and its verdict stays as it ended."""
    canary = _canary(traffic.prometheus.url, max_rounds=1)
    source = PrometheusSource(PrometheusConfig(url=traffic.prometheus.url))
    analysis_id = ensure_analysis(sessions, canary, key="k-ended", source="argo")
    try:
        await judge_round(sessions, analysis_id, canary, source, utcnow() - timedelta(seconds=2))
        before_end = load_for_round(sessions, analysis_id)  # still running here
        last = await judge_round(sessions, analysis_id, canary, source, utcnow())
        assert last.closing is not None
        with sessions.begin() as session:
            ended = get_analysis(session, analysis_id)
            as_ended = (ended.status, ended.verdict, ended.verdict_round, ended.reason)
        for loaded in (None, before_end):
            with pytest.raises(RoundConflict, match="an ended analysis takes no rounds"):
                await judge_round(
                    sessions, analysis_id, canary, source, utcnow(), final=True, loaded=loaded
                )
    finally:
        await source.aclose()
    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        assert (analysis.status, analysis.verdict, analysis.verdict_round, analysis.reason) == (
            as_ended
        )
        assert [r.index for r in analysis.rounds] == [0, 1]


class _FailingOnce:
    """A metric source whose `fail_at`-th round (1-based) fails like an unreachable
    Prometheus: an error and the previous snapshot unchanged."""

    def __init__(self, source: SimulatedMesh, fail_at: int) -> None:
        self.source, self.fail_at, self.calls = source, fail_at, 0

    async def collect(self, canary, at, previous_snapshot, *, bounds=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.fail_at:
            data = RoundData(canary={}, baseline={}, end=at, error="connection refused")
            return Collected(data=data, snapshot=dict(previous_snapshot))
        return await self.source.collect(canary, at, previous_snapshot, bounds=bounds)


def _judgement_text(result) -> str:  # type: ignore[no-untyped-def]
    judgement = result.judgement
    if judgement is None:
        return json.dumps([result.index, result.error])
    metrics = {
        name: [m.verdict.value, m.round, m.statistics, m.evidence, m.reasons]
        for name, m in sorted(judgement.metrics.items())
    }
    return json.dumps(
        [judgement.verdict.value, judgement.round, judgement.score, judgement.reasons, metrics],
        default=str,
    )


@pytest.mark.parametrize("judge", ["sequential", "mann_whitney", "threshold"])
async def test_a_kept_analysis_judges_exactly_as_one_read_from_the_store_every_round(
    judge: str, sessions
) -> None:
    """The Argo endpoint passes each round's `after` (the judge and its typed state
    kept in memory) to the next; every round, verdicts, statistics and the stored
    state must be those of an analysis read back from the store, to the last bit,
    through a failed round and up to the budget's end."""
    entry = canary_entry("app", judge=judge, max_rounds=7)
    if judge != "sequential":
        limits = {"threshold": {"errors": {"max": 5}, "latency": {"max": 500}}}
        entry["metrics"] = [
            {
                **{k: v for k, v in m.items() if k != "min_requests"},
                **limits.get(judge, {}).get(m["name"], {}),
            }
            for m in entry["metrics"]
        ]
    canary = make_config(config_dict("http://unused", "/nonexistent", [entry])).canary[0]
    traffic = {"app": SimulatedCanary(rps=200.0, canary=ArmModel(error_rate=0.012))}

    async def weight(_name: str) -> int:
        return 30

    ids, texts, states = {}, {}, {}
    for how in ("kept", "stored"):
        source = _FailingOnce(SimulatedMesh(traffic, weight, speed=1.0, seed=7), fail_at=4)
        ids[how] = ensure_analysis(sessions, canary, key=f"k-{judge}-{how}", source="argo")
        texts[how], states[how] = [], []
        start, loaded = utcnow() - timedelta(minutes=10), None
        for index in range(8):
            result = await judge_round(
                sessions,
                ids[how],
                canary,
                source,
                start + timedelta(seconds=10 * index),
                loaded=loaded if how == "kept" else None,
            )
            loaded = result.after
            texts[how].append(_judgement_text(result))
            with sessions.begin() as session:
                states[how].append(json.dumps(get_analysis(session, ids[how]).judge_state))
            if result.closing is not None:  # a FAIL or the budget ended it
                assert loaded is None
                break
    assert len(texts["kept"]) >= 6
    assert texts["kept"] == texts["stored"]
    assert states["kept"] == states["stored"]
