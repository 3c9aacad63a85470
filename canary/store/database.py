"""Connecting to the database, applying migrations and refusing a wrong schema.

SQLite is the embedded default for one process; PostgreSQL is for anything shared
(several daemon replicas). The schema is owned by Alembic (`migrations/`): the
service refuses to run against a database that is unmigrated or that a newer
version of canary migrated.
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from canary.errors import DatabaseError, SchemaError
from canary.model import json_text

__all__ = [
    "Session",
    "Sessions",
    "StoreFailure",
    "backend",
    "check_schema",
    "connect",
    "connection_url",
    "current_revision",
    "database_label",
    "dispose",
    "failure_reason",
    "head_revision",
    "migrate",
    "ping",
    "sessions",
    "sqlite_file",
]

#: A factory of sessions on one database: `with sessions.begin() as session:` is one
#: transaction. The rest of canary passes it (and the session) to the store's functions.
Sessions = sessionmaker[Session]

#: What the database driver raises when a statement or a connection fails (the
#: database is down, a deadlock, a lost connection): callers that answer for an
#: unavailable store (the API's 503, a scrape's `canary_store_up 0`) catch this.
StoreFailure = SQLAlchemyError


def _describe(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite database {parsed.database or ':memory:'}"
    return f"{parsed.get_backend_name()} at {parsed.host or 'localhost'}:{parsed.port or 5432}"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain `postgresql://` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


#: JSON columns: encoded once with NaN/Inf as strings (`model.json_text`), decoded by
#: orjson (analyses carry their whole configuration, judge state and snapshot).
_JSON = {"json_serializer": json_text, "json_deserializer": orjson.loads}


def connect(url: str) -> Engine:
    """An engine for `url`; creates the directory of a SQLite file."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"invalid database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **_JSON)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        try:
            engine = create_engine(url, pool_size=10, max_overflow=20, **_JSON)
        except ModuleNotFoundError as exc:
            raise DatabaseError(
                f"missing driver for {url.split(':')[0]}: {exc}; install canary[postgres]"
            ) from None
        event.listen(engine, "checkin", _note_checkin)
        event.listen(engine, "checkout", _ping_if_idle)
    return engine


#: A pooled server connection idle for longer than this is pinged before it is used.
PING_IDLE_SECONDS = 5.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Before a connection idle for `PING_IDLE_SECONDS` is used, ask the server whether
    it is still there (a restarted PostgreSQL, a proxy's idle cut); if not, the pool
    opens a new one (SQLAlchemy's "pessimistic disconnect handling", done only for
    idle connections).

    SQLAlchemy's `pool_pre_ping` pings at every checkout: two more round trips in
    each Argo round. A connection back in use within the span is not pinged, so a
    database restart under load fails the transactions then in flight, once.
    """
    since = record.info.get("checked_in")
    if since is None or time.monotonic() - since < PING_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as exc:  # the driver's error, whatever its class
        raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit survives a crash of the process (kill -9); only a power
    # loss or OS crash may drop the last commits. PostgreSQL is for anything shared.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sessions(engine: Engine) -> Sessions:
    return sessionmaker(engine, expire_on_commit=False)


def _url_of(sessions: Sessions | str) -> Any:
    if isinstance(sessions, str):
        return make_url(normalize_url(sessions))
    return getattr(sessions.kw.get("bind"), "url", None)


def backend(sessions: Sessions) -> str:
    """The database's backend name: ``sqlite`` or ``postgresql`` ("" if unbound)."""
    url = _url_of(sessions)
    return url.get_backend_name() if url is not None else ""


def sqlite_file(sessions: Sessions | str) -> Path | None:
    """The SQLite database file of these sessions (or of a URL); None for PostgreSQL
    or an in-memory database."""
    url = _url_of(sessions)
    if url is None or url.get_backend_name() != "sqlite":
        return None
    if url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database)).expanduser()


def connection_url(sessions: Sessions) -> str:
    """The full URL these sessions connect with (password included), for another
    process to connect the same way."""
    url = _url_of(sessions)
    if url is None:
        raise DatabaseError("these sessions are bound to no database")
    return url.render_as_string(hide_password=False)


def dispose(sessions: Sessions) -> None:
    """Close the connections these sessions' engine holds (a new one opens on use)."""
    bind = sessions.kw.get("bind")
    if bind is not None:
        bind.dispose()


def database_label(sessions: Sessions) -> str:
    """The database's URL without its password (what an operator needs to look at)."""
    url = _url_of(sessions)
    return url.render_as_string(hide_password=True) if url is not None else "the database"


def failure_reason(exc: StoreFailure) -> str:
    """The driver's first line (`OperationalError: database "x" does not exist`)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:300]


def ping(sessions: Sessions) -> None:
    """One round trip to the database, then `check_schema` (readiness)."""
    with sessions() as session:
        session.execute(text("SELECT 1"))
        check_schema(session.get_bind())  # type: ignore[arg-type]


def _alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(files("canary.migrations")))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to {_describe(str(engine.url))}: {exc.orig}".strip()
        ) from None


def migrate(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Apply migrations up to `revision`; returns (before, after)."""
    before = current_revision(engine)
    known = {
        s.revision for s in ScriptDirectory.from_config(_alembic_config(engine)).walk_revisions()
    }
    if before is not None and before not in known:
        raise SchemaError(
            f"{_describe(str(engine.url))} was migrated by a newer version of canary "
            f"(revision {before}); upgrade canary"
        )
    command.upgrade(_alembic_config(engine), revision)
    return before, current_revision(engine) or ""


def check_schema(engine: Engine) -> None:
    """Raise SchemaError unless the database is at this version's head revision.

    A SQLite file that does not exist is not created (connecting would leave an
    empty file behind): the error says to run `canary db upgrade`.
    """
    url = engine.url
    file = url.database if url.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).expanduser().exists():
        raise SchemaError(f"SQLite database {file} does not exist; run `canary db upgrade` first")
    current = current_revision(engine)
    head = head_revision()
    where = _describe(str(engine.url))
    if current is None:
        raise SchemaError(f"{where} has no canary schema; run `canary db upgrade` first")
    if current == head:
        return
    script = ScriptDirectory.from_config(_alembic_config(engine))
    if current not in {s.revision for s in script.walk_revisions()}:
        raise SchemaError(
            f"{where} was migrated by a newer version of canary (revision {current}); "
            "upgrade canary"
        )
    raise SchemaError(f"{where} is at revision {current}, needs {head}; run `canary db upgrade`")
