"""Many analyses at once: loaded whole for an export, added or replaced by an import.

The caller owns the transaction, so an import writes every analysis or none.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from canary.store.tables import Analysis, Round

__all__ = [
    "add_analysis",
    "delete_analysis",
    "key_owners",
    "load_full_many",
    "missing_ids",
    "rounds_done",
]


def load_full_many(session: Session, analysis_ids: Sequence[str]) -> dict[str, Analysis]:
    """The stored analyses among these ids by id, with their rounds, observations,
    results and actions loaded (four queries, not one per round)."""
    query = (
        select(Analysis)
        .where(Analysis.id.in_(list(analysis_ids)))
        .options(
            selectinload(Analysis.rounds).selectinload(Round.observations),
            selectinload(Analysis.rounds).selectinload(Round.results),
            selectinload(Analysis.actions),
        )
    )
    return {analysis.id: analysis for analysis in session.scalars(query)}


def missing_ids(session: Session, analysis_ids: Sequence[str]) -> list[str]:
    """The ids among these that no stored analysis has, in the given order."""
    found = set(session.scalars(select(Analysis.id).where(Analysis.id.in_(list(analysis_ids)))))
    return [i for i in analysis_ids if i not in found]


def rounds_done(session: Session, analysis_ids: Sequence[str]) -> dict[str, int]:
    """How many rounds each stored analysis among these ids has done."""
    rows = session.execute(
        select(Analysis.id, Analysis.rounds_done).where(Analysis.id.in_(list(analysis_ids)))
    )
    return {row.id: row.rounds_done for row in rows}


def key_owners(session: Session, keys: Sequence[str]) -> dict[str, str]:
    """Which stored analysis holds each of these keys (key -> analysis id)."""
    rows = session.execute(select(Analysis.key, Analysis.id).where(Analysis.key.in_(list(keys))))
    return {row.key: row.id for row in rows}


def delete_analysis(session: Session, analysis_id: str) -> None:
    """Delete an analysis with its rounds and actions."""
    session.execute(delete(Analysis).where(Analysis.id == analysis_id))
    session.flush()


def add_analysis(session: Session, analysis: Analysis) -> None:
    """Add a whole analysis (built with its rounds and actions); flushed, so a
    conflicting key fails here."""
    session.add(analysis)
    session.flush()
