"""The SQL store's schema, as an ordered list of explicit migrations applied by `migrate`.

Every worker runs `migrate` at start-up, so it must be safe when several start at once: the whole run is one
transaction that first takes a lock (`pg_advisory_xact_lock` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so
one worker migrates and the others wait, then find nothing left to do.

A migration, once released, is never edited: it describes its own tables (not the store's query-time view of
them), so a database migrated years ago and a fresh one end up identical. Change the schema by appending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)

from worker.models import utcnow
from worker.stores.engine import UtcDateTime, write_transaction


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


_metadata = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UtcDateTime(), nullable=False),
)

_PG_LOCK_KEY = 0x4C4C_4156_4755_4152  # "LLAVGUAR": one advisory lock per database, held until commit


def _v1_create_verdicts(conn: Connection) -> None:
    metadata = MetaData()
    Table(
        "verdicts",
        metadata,
        Column("id", Text, primary_key=True),
        Column("status", Text, nullable=False),
        Column("rating", Text),
        Column("category", Text),
        Column("policy_name", Text, nullable=False),
        Column("image_sha256", Text),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("completed_at", UtcDateTime(), nullable=False),
        Column("body", Text, nullable=False),
        Index("ix_verdicts_completed_at", "completed_at"),
        Index("ix_verdicts_rating_category", "rating", "category"),
    )
    metadata.create_all(conn)


def _v2_add_audit(conn: Connection) -> None:
    """The audit name copied out of the body; rows stored before it are NULL (they belong to no audit)."""
    conn.execute(text("ALTER TABLE verdicts ADD COLUMN audit TEXT"))
    conn.execute(text("CREATE INDEX ix_verdicts_audit_status ON verdicts (audit, status)"))


def _v3_add_decision(conn: Connection) -> None:
    """The decision (issue 11) copied out of the body; rows stored before it are NULL (they had none)."""
    conn.execute(text("ALTER TABLE verdicts ADD COLUMN decision TEXT"))
    conn.execute(text("CREATE INDEX ix_verdicts_decision_completed_at ON verdicts (decision, completed_at)"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create verdicts with indexes on completed_at and (rating, category)", _v1_create_verdicts),
    Migration(2, "add verdicts.audit with an index on (audit, status)", _v2_add_audit),
    Migration(3, "add verdicts.decision with an index on (decision, completed_at)", _v3_add_decision),
)
LATEST_VERSION = MIGRATIONS[-1].version


def migrate(engine: Engine) -> int:
    """Apply the pending migrations in one locked transaction; return the schema version afterwards.

    A database already at a newer version (migrated by newer code) is left alone.
    """
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        schema_migrations.create(conn, checkfirst=True)
        applied = set(conn.scalars(select(schema_migrations.c.version)))
        for migration in MIGRATIONS:
            if migration.version not in applied:
                migration.apply(conn)
                conn.execute(
                    schema_migrations.insert().values(version=migration.version, applied_at=utcnow())
                )
                applied.add(migration.version)
        return max(applied, default=0)


def current_version(engine: Engine) -> int:
    """The highest applied migration, 0 for a database never migrated."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(schema_migrations.name):
            return 0
        return int(conn.scalar(select(func.max(schema_migrations.c.version))) or 0)
