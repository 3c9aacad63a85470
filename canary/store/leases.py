"""Lease rows: which daemon replica owns which canary, until when.

A replica runs rounds only for canaries it holds. `acquire` takes a free or expired
lease or renews its own, atomically: an UPDATE guarded by (owner = me OR expired),
or an INSERT that loses cleanly to a concurrent INSERT through the primary key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from canary.store.tables import Lease, utcnow

__all__ = ["acquire", "holder", "release", "release_all"]


def acquire(
    sessions: sessionmaker[Session],
    name: str,
    owner: str,
    ttl: float,
    now: datetime | None = None,
) -> bool:
    """Take or renew the lease on `name` for `ttl` seconds; True if `owner` holds it."""
    now = now or utcnow()
    expires = now + timedelta(seconds=ttl)
    with sessions.begin() as session:
        result = session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.owner == owner, Lease.expires_at < now))
            .values(owner=owner, expires_at=expires, renewed_at=now)
        )
        if result.rowcount == 1:
            return True
        if session.get(Lease, name) is not None:
            return False  # held by a live replica
    try:
        with sessions.begin() as session:
            session.add(Lease(name=name, owner=owner, expires_at=expires, renewed_at=now))
        return True
    except IntegrityError:
        return False  # another replica inserted first


def holder(session: Session, name: str, now: datetime | None = None) -> str | None:
    """The owner of a live lease on `name`, or None."""
    lease = session.scalars(select(Lease).where(Lease.name == name)).one_or_none()
    if lease is None or lease.expires_at < (now or utcnow()):
        return None
    return lease.owner


def release(sessions: sessionmaker[Session], name: str, owner: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner))


def release_all(sessions: sessionmaker[Session], owner: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(Lease).where(Lease.owner == owner))
