"""Read-only queries for the API, the history and canary's own metrics.

Each function reads light columns (no settings, judge state or snapshot) and
returns plain rows or detached objects. The functions that take a sessionmaker run
their own short read; the ones that take a session read in the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select, tuple_
from sqlalchemy.orm import Session, selectinload

from canary.errors import NotFoundError
from canary.model import AnalysisStatus
from canary.store.tables import Analysis, Round

__all__ = [
    "AnalysisHead",
    "LatestRound",
    "analysis_counts",
    "analysis_head",
    "analysis_row",
    "latest_judged_rounds",
    "latest_round",
    "latest_rounds",
    "next_rounds_due",
    "running_since",
]


@dataclass(frozen=True, slots=True)
class AnalysisHead:
    """An analysis' scalar columns that say where it stands."""

    id: str
    status: str
    verdict: str
    verdict_round: int | None
    started_at: datetime


@dataclass(frozen=True, slots=True)
class LatestRound:
    """When an analysis' latest round was recorded, and whether its queries failed."""

    index: int
    recorded_at: datetime
    error: str | None


def analysis_head(session: Session, analysis_id: str) -> AnalysisHead:
    """The analysis' status and verdict columns; NotFoundError for an unknown id."""
    row = session.execute(
        select(
            Analysis.id,
            Analysis.status,
            Analysis.verdict,
            Analysis.verdict_round,
            Analysis.started_at,
        ).where(Analysis.id == analysis_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no analysis with id {analysis_id!r}")
    return AnalysisHead(*row)


def latest_rounds(session: Session, analysis_id: str, limit: int) -> list[Round]:
    """The analysis' last `limit` rounds, newest first, with their per-metric results."""
    return list(
        session.scalars(
            select(Round)
            .where(Round.analysis_id == analysis_id)
            .order_by(Round.index.desc())
            .limit(limit)
            .options(selectinload(Round.results))
        )
    )


#: Built once: the Argo endpoint reads these in every round, and building a statement
#: (and the ORM's execution around it) cost more than the database's work.
_LATEST_ROUND = (
    select(Round.index, Round.recorded_at, Round.error)
    .where(Round.analysis_id == bindparam("analysis_id"))
    .order_by(Round.index.desc())
    .limit(1)
)
_ANALYSIS_ROW = select(*Analysis.__table__.c).where(
    Analysis.__table__.c.id == bindparam("analysis_id")
)


def latest_round(session: Session, analysis_id: str) -> LatestRound | None:
    """The analysis' latest round (index, time, error), None before its first."""
    row = session.connection().execute(_LATEST_ROUND, {"analysis_id": analysis_id}).first()
    return LatestRound(*row) if row is not None else None


def analysis_row(session: Session, analysis_id: str) -> Row[Any]:
    """Every column of the analysis as a plain row (no ORM object): what a round reads
    before collecting. NotFoundError for an unknown id."""
    row = session.connection().execute(_ANALYSIS_ROW, {"analysis_id": analysis_id}).first()
    if row is None:
        raise NotFoundError(f"no analysis with id {analysis_id!r}")
    return row


def running_since(session: Session, source: str, since: datetime) -> int:
    """How many analyses of `source` are running and were updated at or after `since`."""
    count = session.scalar(
        select(func.count())
        .select_from(Analysis)
        .where(
            Analysis.source == source,
            Analysis.status == AnalysisStatus.RUNNING.value,
            Analysis.updated_at >= since,
        )
    )
    return int(count or 0)


def analysis_counts(session: Session) -> list[tuple[str, str, str, int]]:
    """(canary, status, verdict, number of analyses) for every stored combination."""
    rows = session.execute(
        select(Analysis.canary, Analysis.status, Analysis.verdict, func.count()).group_by(
            Analysis.canary, Analysis.status, Analysis.verdict
        )
    ).all()
    return [(canary, status, verdict, int(count)) for canary, status, verdict, count in rows]


def next_rounds_due(session: Session) -> list[tuple[str, datetime]]:
    """Per canary, the earliest next round due of its running analyses."""
    rows = session.execute(
        select(Analysis.canary, func.min(Analysis.next_round_at))
        .where(
            Analysis.status == AnalysisStatus.RUNNING.value,
            Analysis.next_round_at.is_not(None),
        )
        .group_by(Analysis.canary)
    ).all()
    return [(canary, due) for canary, due in rows]


def latest_judged_rounds(session: Session, analysis_ids: Sequence[str]) -> list[Round]:
    """Per analysis, its latest judged round (index >= 1) with its per-metric results."""
    if not analysis_ids:
        return []
    latest = (
        select(Round.analysis_id, func.max(Round.index))
        .where(Round.analysis_id.in_(list(analysis_ids)), Round.index >= 1)
        .group_by(Round.analysis_id)
    )
    return list(
        session.scalars(
            select(Round)
            .where(tuple_(Round.analysis_id, Round.index).in_(latest))
            .options(selectinload(Round.results))
        ).all()
    )
