"""Stored analyses as replay reads them: the recorded configuration and the rounds'
observations, without the object graph.

`iter_stored` reads analyses in batches with plain column queries, so a backtest over
ten thousand analyses costs a handful of queries per batch, not one per round. An
analysis whose stored observations cannot be read is handed out as the
`StoredDataError` naming it, so one bad analysis does not end a backtest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from canary.errors import StoredDataError
from canary.model import RoundData
from canary.store.analyses import load_analysis_full, round_data, unreadable_columns
from canary.store.tables import Analysis, ObservationRow, Round

__all__ = [
    "ENGINE_SOURCES",
    "StoredAnalysis",
    "StoredRound",
    "iter_stored",
    "load_stored",
    "select_ids",
]

#: Sources whose analyses moved traffic through the engine.
ENGINE_SOURCES = frozenset({"daemon"})


@dataclass(frozen=True, slots=True)
class StoredRound:
    """What replay needs of one stored round."""

    index: int
    data: RoundData
    verdict: str
    decision: str | None
    weight: int
    step: int


@dataclass(frozen=True, slots=True)
class StoredAnalysis:
    """What replay needs of one stored analysis: its recorded configuration and rounds."""

    id: str
    canary: str
    source: str
    judge: str
    settings: Mapping[str, Any]
    status: str
    verdict: str
    verdict_round: int | None
    started_at: datetime
    engine_state: Mapping[str, Any]
    rounds: tuple[StoredRound, ...]

    @property
    def mode(self) -> str:
        return "engine" if self.source in ENGINE_SOURCES else "verdict"


def _stored_round(row: Any) -> StoredRound:
    return StoredRound(
        index=row.index,
        data=round_data(row),
        verdict=row.verdict,
        decision=row.decision,
        weight=row.weight,
        step=row.step,
    )


def _stored(analysis: Any, rounds: Iterable[Any]) -> StoredAnalysis:
    return StoredAnalysis(
        id=analysis.id,
        canary=analysis.canary,
        source=analysis.source,
        judge=analysis.judge,
        settings=analysis.settings or {},
        status=analysis.status,
        verdict=analysis.verdict,
        verdict_round=analysis.verdict_round,
        started_at=analysis.started_at,
        engine_state=analysis.engine_state or {},
        rounds=tuple(_stored_round(r) for r in rounds),
    )


def load_stored(session: Session, analysis_id: str) -> StoredAnalysis:
    """One analysis with its rounds; NotFoundError (exit 2) for an unknown id,
    StoredDataError (exit 3) naming what cannot be read."""
    analysis = load_analysis_full(session, analysis_id)
    return _stored(analysis, analysis.rounds)


_ANALYSIS_COLUMNS = (
    Analysis.id,
    Analysis.canary,
    Analysis.source,
    Analysis.judge,
    Analysis.settings,
    Analysis.status,
    Analysis.verdict,
    Analysis.verdict_round,
    Analysis.started_at,
    Analysis.engine_state,
)
_ROUND_COLUMNS = (
    Round.id,
    Round.analysis_id,
    Round.index,
    Round.window_start,
    Round.window_end,
    Round.error,
    Round.verdict,
    Round.decision,
    Round.weight,
    Round.step,
)


def iter_stored(
    session: Session, analysis_ids: Sequence[str], *, batch_size: int = 400
) -> Iterator[StoredAnalysis | StoredDataError]:
    """Analyses by id, in the given order, read with three column queries per batch;
    an analysis that cannot be read comes as the StoredDataError that names it.

    Rows are read as tuples (no ORM identity map), so memory stays bounded by the batch
    and the cost is a handful of queries per `batch_size` analyses, not one per round.
    """
    for start in range(0, len(analysis_ids), batch_size):
        yield from _batch(session, list(analysis_ids[start : start + batch_size]))


def _batch(session: Session, ids: list[str]) -> list[StoredAnalysis | StoredDataError]:
    try:
        analyses, rounds = _read_batch(session, ids)
    except (TypeError, ValueError) as exc:
        # A value a column's type cannot read (a time or JSON text edited by hand in
        # SQLite) fails the whole query: read one analysis at a time to name it.
        if len(ids) > 1:
            return [stored for one in ids for stored in _batch(session, [one])]
        return [unreadable_columns(session, ids[0], exc)]
    out: list[StoredAnalysis | StoredDataError] = []
    for analysis_id in ids:
        if analysis_id in analyses:
            try:
                out.append(_stored(analyses[analysis_id], rounds[analysis_id]))
            except StoredDataError as exc:
                out.append(exc)
    return out


def _read_batch(session: Session, ids: list[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The analyses' columns by id, and their rounds (with observations) in order."""
    analyses = {
        row.id: row
        for row in session.execute(select(*_ANALYSIS_COLUMNS).where(Analysis.id.in_(ids)))
    }
    rounds: dict[str, list[Any]] = {analysis_id: [] for analysis_id in ids}
    by_round_id: dict[int, Any] = {}
    query = (
        select(*_ROUND_COLUMNS)
        .where(Round.analysis_id.in_(ids))
        .order_by(Round.analysis_id, Round.index)
    )
    for row in session.execute(query):
        view = SimpleNamespace(**row._mapping, observations=[])
        rounds[row.analysis_id].append(view)
        by_round_id[row.id] = view
    observations = (
        select(
            ObservationRow.round_id,
            ObservationRow.metric,
            ObservationRow.arm,
            ObservationRow.delta,
        )
        .join(Round, Round.id == ObservationRow.round_id)
        .where(Round.analysis_id.in_(ids), Round.index >= 1)
        .order_by(ObservationRow.id)
    )
    for row in session.execute(observations):
        by_round_id[row.round_id].observations.append(row)
    return analyses, rounds


def select_ids(
    session: Session, *, canary: str | None = None, since: datetime | None = None
) -> list[str]:
    """Ids of the analyses in range, oldest first (one query, ids only)."""
    query = select(Analysis.id).order_by(Analysis.started_at, Analysis.id)
    if canary:
        query = query.where(Analysis.canary == canary)
    if since:
        query = query.where(Analysis.started_at >= since)
    return list(session.scalars(query))
