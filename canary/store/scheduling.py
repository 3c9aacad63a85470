"""The daemon's reads and lease renewals: light column queries, one transaction each.

Every function takes the sessionmaker and runs its own short transaction, so the
daemon calls them in worker threads (`asyncio.to_thread`) and never holds a session
across an await. Rows come back detached (plain values or expunged objects).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from canary.errors import UsageError
from canary.model import ActionState, AnalysisStatus
from canary.store.database import Sessions
from canary.store.tables import Action, Analysis, Lease, MetricResultRow, Round, utcnow

__all__ = [
    "action_context",
    "action_outcome",
    "find_work",
    "latest_revision",
    "live_leases",
    "load_detached",
    "renew_held",
    "round_context",
    "schedule_info",
]


def find_work(
    sessions: Sessions, statuses: Iterable[str], source: str = "daemon"
) -> tuple[list[tuple[str, str, str, datetime]], list[tuple[int, str]]]:
    """In one transaction: the analyses of `source` in `statuses` as (id, canary,
    status, started_at), and every pending action as (action id, canary), oldest first.
    """
    with sessions.begin() as session:
        active = session.execute(
            select(Analysis.id, Analysis.canary, Analysis.status, Analysis.started_at).where(
                Analysis.status.in_(list(statuses)), Analysis.source == source
            )
        ).all()
        pending = session.execute(
            select(Action.id, Analysis.canary)
            .join(Analysis, Analysis.id == Action.analysis_id)
            .where(Action.state == ActionState.PENDING.value)
            .order_by(Action.id)
        ).all()
        return (
            [(row[0], row[1], row[2], row[3]) for row in active],
            [(int(row[0]), row[1]) for row in pending],
        )


def live_leases(sessions: Sessions, prefix: str, now: datetime | None = None) -> int:
    """How many unexpired leases have a name starting with `prefix`."""
    with sessions.begin() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Lease)
            .where(Lease.name.like(f"{prefix}%"), Lease.expires_at >= (now or utcnow()))
        )
        return int(count or 0)


def renew_held(sessions: Sessions, owner: str, names: Sequence[str], ttl: float) -> set[str]:
    """Renew `owner`'s leases on `names` in one statement; the names it still holds."""
    if not names:
        return set()
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    with sessions.begin() as session:
        session.execute(
            update(Lease)
            .where(Lease.owner == owner, Lease.name.in_(list(names)))
            .values(expires_at=expires, renewed_at=now)
        )
        held = session.scalars(
            select(Lease.name).where(Lease.owner == owner, Lease.name.in_(list(names)))
        ).all()
    return set(held)


def schedule_info(sessions: Sessions, analysis_id: str) -> tuple[Analysis, datetime | None] | None:
    """A running analysis (detached) and when its last round was recorded; else None."""
    with sessions.begin() as session:
        analysis = session.get(Analysis, analysis_id)
        if analysis is None or analysis.status != AnalysisStatus.RUNNING.value:
            return None
        last = session.scalar(
            select(func.max(Round.recorded_at)).where(Round.analysis_id == analysis_id)
        )
        session.expunge(analysis)
        return analysis, last


def action_context(sessions: Sessions, action_id: int) -> tuple[Analysis, Action] | None:
    """A pending action and its analysis (both detached), or None if no longer pending."""
    with sessions.begin() as session:
        action = session.get(Action, action_id)
        if action is None or action.state != ActionState.PENDING.value:
            return None
        analysis = session.get(Analysis, action.analysis_id)
        assert analysis is not None
        session.expunge_all()
        return analysis, action


def action_outcome(
    sessions: Sessions, analysis_id: str, round_index: int | None
) -> tuple[str, dict[str, dict[str, Any]]]:
    """An analysis' status ("" when it is gone) and, for an action a round decided
    (`round_index`), that round's stored results: metric -> metric, verdict, reasons,
    statistics (none for an operator's action)."""
    with sessions.begin() as session:
        status = session.scalar(select(Analysis.status).where(Analysis.id == analysis_id))
        if round_index is None:
            return status or "", {}
        rows = session.execute(
            select(
                MetricResultRow.metric,
                MetricResultRow.verdict,
                MetricResultRow.reasons,
                MetricResultRow.statistics,
            )
            .join(Round, Round.id == MetricResultRow.round_id)
            .where(Round.analysis_id == analysis_id, Round.index == round_index)
        )
        return status or "", {row.metric: row._asdict() for row in rows}


def round_context(sessions: Sessions, analysis_id: str) -> tuple[str, str, list[int]]:
    """(status, canary, pending action ids) of an analysis: light columns only.

    UsageError when the analysis disappeared.
    """
    with sessions.begin() as session:
        row = session.execute(
            select(Analysis.status, Analysis.canary).where(Analysis.id == analysis_id)
        ).one_or_none()
        if row is None:
            raise UsageError(f"analysis {analysis_id} disappeared")
        pending = session.scalars(
            select(Action.id)
            .where(
                Action.analysis_id == analysis_id,
                Action.state == ActionState.PENDING.value,
            )
            .order_by(Action.id)
        ).all()
        return row.status, row.canary, list(pending)


def load_detached(sessions: Sessions, analysis_id: str) -> Analysis:
    """An analysis row, detached; UsageError when it disappeared."""
    with sessions.begin() as session:
        analysis = session.get(Analysis, analysis_id)
        if analysis is None:
            raise UsageError(f"analysis {analysis_id} disappeared")
        session.expunge(analysis)
        return analysis


def latest_revision(sessions: Sessions, canary: str) -> str | None:
    """The revision of the canary's most recent analysis that recorded one."""
    with sessions.begin() as session:
        return session.scalar(
            select(Analysis.revision)
            .where(Analysis.canary == canary, Analysis.revision.is_not(None))
            .order_by(Analysis.started_at.desc())
            .limit(1)
        )
