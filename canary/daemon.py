"""The daemon: scheduled rounds per analysis, leases, crash-safe actions.

- APScheduler 3 (`AsyncIOScheduler`) runs one job per running analysis at its
  interval (`max_instances=1`: no overlapping rounds of one analysis; `coalesce`:
  missed runs collapse into one; `jitter` spreads load) plus a *sync* job every few
  seconds that renews leases, picks up analyses started elsewhere (CLI, API, another
  replica), removes jobs of analyses that ended or were paused, carries out pending
  actions and auto-starts canaries whose revision label changed.
- Each canary is owned through a lease row (owner, expiry) renewed by the sync job
  and before each round; a replica runs rounds only for canaries it holds, and a
  dead replica's leases expire so another takes over. With SQLite only one daemon
  may run (`single_daemon_lock`).
- On start every analysis is resumed from the database; pending actions are
  reconciled through the router, whose write record makes re-applying idempotent
  (never a step twice) while a rollback is always carried out.
- SIGTERM (`stop()`): no new rounds; running rounds get `shutdown_timeout` seconds
  to finish, then are cancelled (a round is persisted atomically, so an abandoned
  round leaves nothing half-written; a committed but unapplied action stays pending
  for the next owner); leases are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import socket
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from canary import control, telemetry
from canary import engine as rollout
from canary.config import CanaryConfig, Config
from canary.errors import DaemonAlreadyRunning, UsageError
from canary.model import ActionState, AnalysisStatus
from canary.notify import Event, EventName, Notifier
from canary.ports import MetricSource, RevisionSource
from canary.rounds import (
    ActionResult,
    DaemonRoundResult,
    RoundConflict,
    apply_action,
    daemon_round,
    recorded_canary,
)
from canary.store import leases, scheduling
from canary.store.database import Sessions, sqlite_file
from canary.store.tables import Analysis, utcnow
from canary.verdict_words import describe_judgement

__all__ = ["Daemon", "lease_name", "single_daemon_lock"]

log = logging.getLogger(__name__)


#: More analyses than this becoming due in one sync get their first rounds spread.
BULK_SCHEDULE = 10
#: Canaries settled concurrently by one sync (pending actions, scheduling).
SYNC_CONCURRENCY = 8
#: The longest spread of first rounds (seconds).
MAX_SPREAD = 60.0

#: Lease rows named ``replica/<owner>`` are each replica's heartbeat (fair share).
REPLICA_PREFIX = "replica/"


def lease_name(canary: str) -> str:
    return f"canary/{canary}"


@contextlib.contextmanager
def single_daemon_lock(database_url: str):  # type: ignore[no-untyped-def]
    """Hold an exclusive lock on ``<db>.daemon.lock`` for a SQLite file database.

    The kernel drops the lock when the process dies (even on kill -9). A no-op for
    PostgreSQL, where replicas coordinate through lease rows.
    """
    path = sqlite_file(database_url)
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".daemon.lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise DaemonAlreadyRunning(
                f"another canary daemon (pid {holder}) is running on the SQLite database "
                f"{path}; SQLite supports one daemon — use PostgreSQL for several replicas"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield lock_path
    finally:
        handle.close()


def _event_for(kind: str, status: str) -> EventName | None:
    if kind == "start":
        return "started"
    if kind == "advance":
        return "advanced"
    if kind == "promote":
        return "promoted"
    if kind in ("rollback", "abort"):
        return "inconclusive" if status == AnalysisStatus.INCONCLUSIVE.value else "rolled_back"
    return None


@dataclass(frozen=True, slots=True)
class _Subject:
    """What a notification names of an analysis (from its row or from a round)."""

    id: str
    canary: str
    step: int
    weight: int
    verdict: str

    @classmethod
    def of(cls, analysis: Analysis) -> _Subject:
        return cls(analysis.id, analysis.canary, analysis.step, analysis.weight, analysis.verdict)


@dataclass
class _Work:
    """What the sync job found for one canary (light columns only)."""

    canary: str
    analysis_id: str | None = None  # the active daemon analysis
    status: str | None = None
    started_at: datetime | None = None
    pending: list[int] = field(default_factory=list)  # pending action ids


class Daemon:
    """Runs the rounds of every active analysis this replica holds a lease for."""

    def __init__(
        self,
        config: Config,
        sessions: Sessions,
        *,
        source: MetricSource | None = None,
        router_factory: Callable[[CanaryConfig], Any] | None = None,
        notifier: Notifier | None = None,
        owner: str | None = None,
        lease_ttl: float = 15.0,
        sync_interval: float = 2.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.owner = owner or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
        self.lease_ttl = lease_ttl
        self.sync_interval = sync_interval
        self.shutdown_timeout = shutdown_timeout
        self.notifier = notifier or Notifier(config.webhook)
        self._source = source
        self._router_factory = router_factory
        self._routers: dict[str, Any] = {}
        self._kube: Any | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._held: set[str] = set()
        self._scheduled: dict[str, datetime] = {}
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._revisions: dict[str, str] = {}
        self._revision_checked: dict[str, float] = {}
        self._sync_lock = asyncio.Lock()
        self._in_round: set[str] = set()
        self._canaries: dict[str, CanaryConfig] = {}
        self._confirmed: dict[str, float] = {}  # canary -> when its lease was last renewed
        #: How late (seconds) recent rounds started, for bench/daemon_scale.py.
        self.lateness: deque[float] = deque(maxlen=200_000)
        self.rounds_run = 0
        #: Scheduled rounds skipped because the previous round was still running.
        self.skipped = 0

    # ------------------------------------------------------------------ plumbing

    @property
    def source(self) -> MetricSource:
        if self._source is None:
            from canary.metrics.source import PrometheusSource

            self._source = PrometheusSource(self.config.prometheus)
        return self._source

    def router(self, canary: CanaryConfig) -> Any:
        router = self._routers.get(canary.name)
        if router is None:
            if self._router_factory is not None:
                router = self._router_factory(canary)
            else:
                from canary.traffic import make_router

                if self.config.kubernetes.mode != "memory" and self._kube is None:
                    from canary.traffic.kube import KubeClient

                    self._kube = KubeClient.from_config(self.config.kubernetes)
                router = make_router(self.config.kubernetes, canary, client=self._kube)
            self._routers[canary.name] = router
        return router

    def _canary_config(self, analysis: Analysis) -> CanaryConfig:
        """The canary as recorded when the analysis started (cached: it never changes)."""
        cached = self._canaries.get(analysis.id)
        if cached is None:
            cached = recorded_canary(analysis) or self.config.get_canary(analysis.canary)
            if len(self._canaries) > 10_000:
                self._canaries.clear()
            self._canaries[analysis.id] = cached
        return cached

    def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.to_thread(fn, *args)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until `stop()` is called; then shut down within `shutdown_timeout`."""
        scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        self._scheduler = scheduler
        scheduler.start()
        log.info("daemon %s started", self.owner)
        await self.sync()  # resume every analysis from the database at once
        scheduler.add_job(
            self._sync_job,
            IntervalTrigger(seconds=self.sync_interval),
            id="sync",
            name="sync",
        )
        try:
            await self._stopping.wait()
        finally:
            await self.aclose()

    def stop(self) -> None:
        """Ask the daemon to stop (safe from a signal handler)."""
        self._stopping.set()

    async def aclose(self) -> None:
        """Shut down: no new rounds, running ones get `shutdown_timeout` seconds, leases
        released, connections closed. `run` ends with it; a daemon driven by `sync()`
        alone (tests, tools) calls it itself.
        """
        scheduler = self._scheduler
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        running = [t for t in self._running if not t.done()]
        if running:
            log.info("waiting up to %.0fs for %d round(s)", self.shutdown_timeout, len(running))
            _done, pending = await asyncio.wait(running, timeout=self.shutdown_timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("abandoned %d round(s) at shutdown", len(pending))
                await asyncio.wait(pending, timeout=2)
        with contextlib.suppress(Exception):
            await self._db(leases.release_all, self.sessions, self.owner)
        self._held.clear()
        for router in self._routers.values():
            with contextlib.suppress(Exception):
                await router.aclose()
        if self._kube is not None:
            with contextlib.suppress(Exception):
                await self._kube.aclose()
        if self._source is not None and hasattr(self._source, "aclose"):
            with contextlib.suppress(Exception):
                await self._source.aclose()  # type: ignore[attr-defined]
        await self.notifier.aclose()
        log.info("daemon %s stopped", self.owner)

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            self._scheduled[event.job_id] = event.scheduled_run_times[-1]

    def scheduled_count(self) -> int:
        """How many analyses have a round job on this replica."""
        if self._scheduler is None:
            return 0
        return sum(1 for job in self._scheduler.get_jobs() if job.id != "sync")

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        if event.job_id != "sync":
            self.skipped += 1
            telemetry.ROUNDS_SKIPPED.inc()

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    # ------------------------------------------------------------------ sync

    def _find_work(self) -> dict[str, _Work]:
        work: dict[str, _Work] = {}
        active, pending = scheduling.find_work(self.sessions, control.ACTIVE)
        for analysis_id, canary, status, started_at in active:
            item = work.setdefault(canary, _Work(canary))
            if item.started_at is None or started_at > item.started_at:
                item.analysis_id, item.status, item.started_at = analysis_id, status, started_at
        for action_id, canary in pending:
            work.setdefault(canary, _Work(canary)).pending.append(action_id)
        return work

    def _schedule_info(self, analysis_id: str) -> tuple[CanaryConfig, datetime | None] | None:
        info = scheduling.schedule_info(self.sessions, analysis_id)
        if info is None:
            return None
        analysis, last = info
        return self._canary_config(analysis), last

    async def sync(self) -> None:
        """Renew leases, schedule held analyses, reconcile pending actions, auto-start."""
        if self._stopping.is_set():
            return
        async with self._sync_lock:
            try:
                await self._sync()
            except Exception:  # a sync failure (database down) must not kill the daemon
                log.exception("sync failed")

    async def _sync_job(self) -> None:
        self._track()
        try:
            await self.sync()
        except asyncio.CancelledError:
            # Abandoned at shutdown (like a round): a sync only reads and reconciles,
            # and the next start syncs again.
            log.info("sync abandoned at shutdown")

    def poke(self) -> None:
        """Sync soon (an analysis was started or changed through the API)."""
        if not self._stopping.is_set():
            task = asyncio.get_running_loop().create_task(self._sync_job())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _sync(self) -> None:
        await self._db(
            leases.acquire, self.sessions, REPLICA_PREFIX + self.owner, self.owner, self.lease_ttl
        )
        work = await self._db(self._find_work)
        for name in list(self._held):
            if name not in work:
                await self._db(leases.release, self.sessions, lease_name(name), self.owner)
                self._held.discard(name)
        # Renew what we hold in one statement; notice leases lost meanwhile.
        names = [lease_name(n) for n in self._held]
        renewed_at = time.monotonic()
        still = await self._db(
            scheduling.renew_held, self.sessions, self.owner, names, self.lease_ttl
        )
        for name in self._held:
            if lease_name(name) in still:
                self._confirmed[name] = renewed_at
        for name in list(self._held):
            if lease_name(name) not in still:
                log.warning("lost the lease on canary %s", name)
                self._drop(name, work.get(name))
        # Fair share: take free canaries only up to ceil(canaries / live replicas).
        replicas = await self._db(scheduling.live_leases, self.sessions, REPLICA_PREFIX)
        fair = math.ceil(len(work) / max(1, replicas))
        scheduler = self._scheduler
        unscheduled = sum(
            1
            for w in work.values()
            if w.analysis_id
            and w.status == AnalysisStatus.RUNNING.value
            and scheduler is not None
            and scheduler.get_job(w.analysis_id) is None
        )
        bulk = unscheduled > BULK_SCHEDULE
        mine: list[_Work] = []
        for item in work.values():
            if self._stopping.is_set():
                return
            if item.canary not in self._held:
                if len(self._held) >= fair:
                    continue
                held = await self._db(
                    leases.acquire,
                    self.sessions,
                    lease_name(item.canary),
                    self.owner,
                    self.lease_ttl,
                )
                if not held:
                    continue
                self._confirmed[item.canary] = time.monotonic()
                log.info("holding canary %s", item.canary)
                self._held.add(item.canary)
            mine.append(item)
        # Canaries are independent: settle them concurrently (actions of one canary
        # stay in order), bounded so a restart with many analyses does not stampede.
        limit = asyncio.Semaphore(SYNC_CONCURRENCY)

        async def settle(item: _Work) -> None:
            async with limit:
                if self._stopping.is_set():
                    return
                # A round in progress carries out (and announces) its own action.
                if item.analysis_id not in self._in_round:
                    for action_id in item.pending:
                        await self._apply(action_id)
                if item.analysis_id is None:
                    return
                if item.status == AnalysisStatus.RUNNING.value:
                    await self._schedule(item.analysis_id, spread=bulk)
                else:
                    self._unschedule(item.analysis_id)

        await asyncio.gather(*(settle(item) for item in mine))
        # Shed canaries above the fair share (not mid-round) so other replicas get them.
        excess = len(self._held) - fair
        for name in sorted(self._held):
            if excess <= 0:
                break
            item = work.get(name)
            if item is not None and item.analysis_id in self._in_round:
                continue
            self._drop(name, item)
            await self._db(leases.release, self.sessions, lease_name(name), self.owner)
            log.info("released canary %s to other replicas (fair share %d)", name, fair)
            excess -= 1
        # Jobs of analyses that are no longer active (finished elsewhere).
        active_ids = {w.analysis_id for w in work.values() if w.analysis_id is not None}
        if self._scheduler is not None:
            for job in self._scheduler.get_jobs():
                if job.id != "sync" and job.id not in active_ids:
                    job.remove()
        await self._auto_start(work)

    def _drop(self, name: str, item: _Work | None) -> None:
        self._held.discard(name)
        self._confirmed.pop(name, None)
        if item is not None and item.analysis_id is not None:
            self._unschedule(item.analysis_id)

    async def _schedule(self, analysis_id: str, *, spread: bool = False) -> None:
        scheduler = self._scheduler
        if scheduler is None or scheduler.get_job(analysis_id) is not None:
            return
        info = await self._db(self._schedule_info, analysis_id)
        if info is None or scheduler.get_job(analysis_id) is not None:
            return
        canary, last_round_at = info
        now = utcnow()
        first = now
        if last_round_at is not None:
            first = max(now, last_round_at + timedelta(seconds=canary.interval))
        if spread and first <= now:
            # Many analyses due at once (a restart, a bulk start): spread their first
            # rounds over one interval (stable per analysis) instead of a burst.
            fraction = zlib.crc32(analysis_id.encode()) / 2**32
            first = now + timedelta(seconds=fraction * min(canary.interval, MAX_SPREAD))
        scheduler.add_job(
            self._round_job,
            IntervalTrigger(
                seconds=canary.interval,
                start_date=first,
                jitter=canary.jitter or None,
                timezone="UTC",
            ),
            args=[analysis_id],
            id=analysis_id,
            name=f"round {canary.name}",
            next_run_time=first,
        )
        log.info("scheduled analysis %s every %gs", analysis_id, canary.interval)

    def _unschedule(self, analysis_id: str) -> None:
        if self._scheduler is not None and self._scheduler.get_job(analysis_id) is not None:
            self._scheduler.remove_job(analysis_id)

    # ------------------------------------------------------------------ actions

    async def _apply(self, action_id: int) -> ActionResult | None:
        """Carry out one pending action (reconcile) and notify when it took effect."""
        view = await self._db(scheduling.action_context, self.sessions, action_id)
        if view is None:
            return None
        analysis, action = view
        router = self.router(self._canary_config(analysis))
        result = await apply_action(self.sessions, router, action_id)
        if result.state is ActionState.DONE:
            # With the evidence of the round that decided it (none for an operator's),
            # as that round announces an action it carried out itself.
            status, results = await self._db(
                scheduling.action_outcome, self.sessions, analysis.id, action.round_index
            )
        else:
            status, results = "", {}
        self._after_action(
            _Subject.of(analysis),
            action.kind,
            action.to_weight,
            status,
            result,
            analysis.reason,
            round_index=action.round_index,
            judgement=results,
        )
        return result

    def _after_action(
        self,
        subject: _Subject,
        kind: str,
        to_weight: int,
        status: str,
        result: ActionResult,
        reason: str | None,
        *,
        round_index: int | None = None,
        judgement: Any = None,
    ) -> None:
        """The one notification path of an action, from a round or a reconcile.

        A weight in place announces the action's event (`_event_for`); a write
        refused for drift halted the analysis (`canary.rounds.apply_action`).
        """
        if result.state is ActionState.DONE and not result.earlier:
            # Announced once, by the call that carried it out: a reconcile that finds
            # the action done by its round (or the reverse) says nothing again.
            telemetry.WEIGHT.labels(canary=subject.canary).set(to_weight)
            event = _event_for(kind, status)
            if event:
                self._notify(
                    event,
                    subject,
                    to_weight,
                    reason=reason,
                    round_index=round_index,
                    judgement=judgement,
                )
        elif result.drift:
            self._unschedule(subject.id)
            self._notify("halted", subject, subject.weight, reason=result.error)

    def _notify(
        self,
        event: EventName,
        subject: _Subject,
        weight: int,
        *,
        reason: str | None = None,
        round_index: int | None = None,
        judgement: Any = None,
    ) -> None:
        evidence = tuple(w.line() for w in describe_judgement(judgement)) if judgement else ()
        self.notifier.emit(
            Event(
                event=event,
                canary=subject.canary,
                analysis_id=subject.id,
                weight=weight,
                step=subject.step,
                round=round_index,
                verdict=subject.verdict,
                reason=reason,
                evidence=evidence,
            )
        )

    # ------------------------------------------------------------------ rounds

    async def _round_job(self, analysis_id: str) -> None:
        if self._stopping.is_set():
            return
        self._track()
        begin = utcnow()
        scheduled = self._scheduled.get(analysis_id)
        if scheduled is not None:
            lateness = max(0.0, (begin - scheduled).total_seconds())
            self.lateness.append(lateness)
            telemetry.LATENESS_SECONDS.observe(lateness)
        self._in_round.add(analysis_id)
        try:
            await self.run_round(analysis_id, begin)
        except asyncio.CancelledError:
            # Abandoned at shutdown: a round is persisted in one transaction, so nothing
            # is half-written; an unapplied action stays pending for the next owner.
            log.info("round of analysis %s abandoned at shutdown", analysis_id)
        except Exception:
            log.exception("round of analysis %s failed", analysis_id)
        finally:
            self._in_round.discard(analysis_id)

    async def _holds(self, canary: str) -> bool:
        """True if this replica holds the canary's lease, renewed within half its TTL.

        The sync job renews every held lease in one statement; a round renews its own
        only when that is older than half the TTL (saving a write per round).
        """
        confirmed = self._confirmed.get(canary)
        fresh = confirmed is not None and time.monotonic() - confirmed < self.lease_ttl / 2
        if canary in self._held and fresh:
            return True
        held = await self._db(
            leases.acquire, self.sessions, lease_name(canary), self.owner, self.lease_ttl
        )
        if held:
            self._confirmed[canary] = time.monotonic()
        return bool(held)

    async def run_round(self, analysis_id: str, at: datetime | None = None) -> None:
        """One scheduled round of one analysis, if this replica holds its canary."""
        status, canary_name, pending = await self._db(
            scheduling.round_context, self.sessions, analysis_id
        )
        if status != AnalysisStatus.RUNNING.value:
            self._unschedule(analysis_id)
            return
        if not await self._holds(canary_name):
            self._held.discard(canary_name)
            self._unschedule(analysis_id)
            return
        for action_id in pending:  # traffic must be where the analysis thinks it is
            result = await self._apply(action_id)
            if result is not None and result.state is not ActionState.DONE:
                log.warning("analysis %s: round skipped, action %s pending", analysis_id, action_id)
                return
        canary = self._canaries.get(analysis_id)
        if canary is None:
            analysis = await self._db(scheduling.load_detached, self.sessions, analysis_id)
            canary = self._canary_config(analysis)
        started = time.perf_counter()
        try:
            outcome = await daemon_round(
                self.sessions, analysis_id, canary, self.source, self.router(canary), at or utcnow()
            )
        except RoundConflict as exc:
            log.info("%s", exc)
            return
        except UsageError as exc:  # paused / aborted meanwhile
            log.info("analysis %s: %s", analysis_id, exc)
            self._unschedule(analysis_id)
            return
        self.rounds_run += 1
        log.info(
            "analysis %s round %d: %s (%s)",
            analysis_id,
            outcome.round.index,
            outcome.decision.value if outcome.decision else "warm-up",
            outcome.reason,
            extra={"owner": self.owner},
        )
        telemetry.ROUND_SECONDS.observe(time.perf_counter() - started)
        state = outcome.state
        subject = _Subject(
            id=analysis_id,
            canary=canary_name,
            step=state.step if state else 0,
            weight=state.weight if state else 0,
            verdict=outcome.round.verdict.value,
        )
        self._observe(subject, outcome)

    def _observe(self, subject: _Subject, outcome: DaemonRoundResult) -> None:
        judged = outcome.round
        if outcome.decision is None:
            label = "warmup"
        elif judged.error is not None:
            label = "error"
        else:
            label = outcome.decision.value
        telemetry.ROUNDS.labels(canary=subject.canary, outcome=label).inc()
        if judged.judgement is not None:
            telemetry.observe_judgement(subject.canary, judged.judgement)
        state = outcome.state
        if outcome.action is not None and outcome.decision is not None:
            self._after_action(
                subject,
                rollout.ACTION_KINDS.get(outcome.decision, ""),
                subject.weight,
                state.status.value if state else "",
                outcome.action,
                outcome.reason,
                round_index=judged.index,
                judgement=judged.judgement,
            )
        elif state is not None and state.status is AnalysisStatus.HALTED:
            self._notify(
                "halted", subject, state.weight, reason=outcome.reason, judgement=judged.judgement
            )
        if state is not None and state.status is not AnalysisStatus.RUNNING:
            self._unschedule(subject.id)

    # ------------------------------------------------------------------ auto-start

    async def _auto_start(self, work: dict[str, _Work]) -> None:
        """Start an analysis when an opted-in canary's revision label changes."""
        for canary in self.config.canary:
            if not canary.auto_start or self._stopping.is_set():
                continue
            item = work.get(canary.name)
            if item is not None and item.analysis_id is not None:
                continue
            last = self._revision_checked.get(canary.name, 0.0)
            if time.monotonic() - last < canary.interval:
                continue
            self._revision_checked[canary.name] = time.monotonic()
            held = await self._db(
                leases.acquire, self.sessions, lease_name(canary.name), self.owner, self.lease_ttl
            )
            if not held:
                continue
            self._held.add(canary.name)
            revision = await self._current_revision(canary)
            if revision is None:
                continue
            known = self._revisions.get(canary.name)
            if known is None:
                known = await self._db(scheduling.latest_revision, self.sessions, canary.name)
            self._revisions[canary.name] = revision
            if known is None or known == revision:
                continue
            try:
                analysis_id = await self._db(
                    control.start_analysis, self.sessions, self.config, canary.name, revision
                )
            except UsageError as exc:
                log.info("auto-start of %s skipped: %s", canary.name, exc)
                continue
            log.info(
                "canary %s: revision %s -> %s, started analysis %s",
                canary.name,
                known,
                revision,
                analysis_id,
            )

    async def _current_revision(self, canary: CanaryConfig) -> str | None:
        """The canary arm's current revision, when the metric source can tell."""
        if not isinstance(self.source, RevisionSource):
            return None
        return await self.source.current_revision(canary, utcnow())
