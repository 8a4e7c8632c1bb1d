"""SQLAlchemy engines for the SQL verdict store: driver, SQLite under concurrency, UTC datetimes, errors.

Shared by `sql.py` (queries) and `migrations.py` (schema). The only module of the package that knows about
drivers; it never creates tables and never reads the environment.

SQLite is written by several worker processes and threads at once, so every connection runs in WAL mode
(readers never block the writer) with a busy timeout (writers queue instead of failing), and this module
emits BEGIN itself: the sqlite3 driver's legacy mode begins no transaction for SELECT or DDL, which would
make migrations non-atomic. Writes use `BEGIN IMMEDIATE` so a writer takes the lock up front and waits its
turn, rather than failing with "database is locked" when upgrading a read lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.types import TypeDecorator

from worker.errors import SettingsError, StoreUnavailable
from worker.stores.base import as_utc

POSTGRES_DRIVER = "postgresql+psycopg"
_POSTGRES_ALIASES = frozenset({"postgresql", "postgres", POSTGRES_DRIVER})
_SQLITE_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite"})
SQL_SCHEMES = _POSTGRES_ALIASES | _SQLITE_DRIVERS
"""URL schemes the SQL store accepts; `postgres(ql)://` means psycopg 3 (psycopg2 is not a dependency)."""

SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 10
_BEGIN_IMMEDIATE = "llavaguard_begin_immediate"
_WAL_RETRY_S = 0.02


def normalise_url(url: str) -> URL:
    """Parse a store URL and pin PostgreSQL to psycopg 3; SettingsError for anything unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError("LLAVAGUARD_STORE_URL: not a database URL") from None
    if parsed.drivername not in SQL_SCHEMES:
        raise SettingsError(f"LLAVAGUARD_STORE_URL: unsupported SQL scheme {parsed.drivername!r}")
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername=POSTGRES_DRIVER)
    if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
        raise SettingsError(
            "LLAVAGUARD_STORE_URL: in-memory SQLite is not supported (each pooled connection would see its "
            "own empty database); use a file path such as sqlite:///./verdicts.db"
        )
    return parsed


def make_engine(url: str) -> Engine:
    """An engine for `url` (see `normalise_url`), configured for many threads and processes."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(
        parsed, pool_pre_ping=True, connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    )


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver emits no BEGIN; `_sqlite_on_begin` does
    _enable_wal(dbapi_connection)


def _enable_wal(dbapi_connection: Any) -> None:
    """Switch the file to WAL (it stays so), retrying while locked.

    SQLite's busy timeout does not cover a journal-mode switch: while another worker holds a write lock on a
    fresh file (e.g. migrating it), the switch fails at once with "database is locked" instead of waiting.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        cursor = dbapi_connection.cursor()
        try:
            if str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() == "wal":
                return
            problem = "journal_mode stayed unchanged"
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            problem = str(exc)
        finally:
            cursor.close()
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"no WAL after {SQLITE_BUSY_TIMEOUT_S}s: {problem}")
        time.sleep(_WAL_RETRY_S)


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = bool(conn.get_execution_options().get(_BEGIN_IMMEDIATE, False))
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that commits on success; on SQLite it holds the write lock."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_IMMEDIATE: True})
        with conn.begin():
            yield conn


@contextmanager
def unavailable_on_failure(action: str) -> Iterator[None]:
    """Translate connection-level failures into `StoreUnavailable`; anything else is a bug and propagates."""
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
        raise StoreUnavailable(f"SQL verdict store: {action} failed: {_describe(exc)}") from exc
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise StoreUnavailable(f"SQL verdict store: {action} failed: {_describe(exc)}") from exc


def _describe(exc: Exception) -> str:
    """The driver's own message, first line only: SQLAlchemy's adds the statement and its parameters."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC on every backend.

    SQLite has no timezone type and SQLAlchemy drops the offset, so values are converted to UTC first:
    the stored text then sorts and compares in instant order. Reads come back as aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = as_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)
