"""SQLAlchemy 2 table models. Alembic revisions in `migrations/` must match these.

One analysis is one rollout of one canary revision; it has rounds (unique per
analysis and index), each with raw per-arm observations, per-metric results and at
most one action (recorded as intended before the VirtualService is touched).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Analysis(Base):
    """One rollout (or one judged window) of one canary revision."""

    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    canary: Mapped[str] = mapped_column(String(128), index=True)
    # What identifies the analysis to its caller, e.g. Argo's rollout + pod-template
    # hashes; unique so repeated calls continue the same analysis.
    key: Mapped[str | None] = mapped_column(String(512), unique=True)
    source: Mapped[str] = mapped_column(String(16))  # daemon | analyze | argo | import
    revision: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    verdict_round: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    judge: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # the recorded configuration
    engine_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    judge_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # last raw counters
    weight: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    rounds_done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_round_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    rounds: Mapped[list[Round]] = relationship(
        back_populates="analysis", order_by="Round.index", cascade="all, delete-orphan"
    )
    actions: Mapped[list[Action]] = relationship(
        back_populates="analysis", order_by="Action.id", cascade="all, delete-orphan"
    )


class Round(Base):
    """One scheduled evaluation: its window, judgement, decision and canary weight."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("analysis_id", "index", name="uq_rounds_analysis_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)  # 1-based; round 0 is the warm-up snapshot
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    weight: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    score: Mapped[float | None] = mapped_column()

    analysis: Mapped[Analysis] = relationship(back_populates="rounds")
    observations: Mapped[list[ObservationRow]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="ObservationRow.id"
    )
    results: Mapped[list[MetricResultRow]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="MetricResultRow.id"
    )


class ObservationRow(Base):
    """Raw data of one metric and arm in one round: counter snapshot and delta."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("round_id", "metric", "arm", name="uq_observations_round_metric_arm"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(128))
    arm: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    # The delta as the judges see it: {"total", "failed"} | {"bounds", "buckets"} |
    # {"value"} | null for no data.
    delta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The raw cumulative counters per series at the round's end (audit trail).
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    round: Mapped[Round] = relationship(back_populates="observations")


class MetricResultRow(Base):
    """The judged verdict of one metric after a round."""

    __tablename__ = "metric_results"
    __table_args__ = (UniqueConstraint("round_id", "metric", name="uq_metric_results_round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(128))
    verdict: Mapped[str] = mapped_column(String(16))
    verdict_round: Mapped[int | None] = mapped_column(Integer)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    statistics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # this round's entry

    round: Mapped[Round] = relationship(back_populates="results")


class Action(Base):
    """A change to the traffic, recorded as `pending` before it is carried out."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    round_index: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # start | advance | promote | rollback | abort
    from_weight: Mapped[int | None] = mapped_column(Integer)
    to_weight: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | done | failed
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    analysis: Mapped[Analysis] = relationship(back_populates="actions")


class Lease(Base):
    """Ownership of one canary by one daemon replica until `expires_at`."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
