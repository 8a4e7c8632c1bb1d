"""The verdict store on SQLite or PostgreSQL, one row per verdict.

The row's `body` is the verdict's JSON and the only thing read back; the other columns copy a few fields out
of it so `list` can filter and sort in the database. Saving is one `INSERT ... ON CONFLICT (id) DO NOTHING`,
so the database, not this process, decides which of several racing saves wins. The one update is
`record_review`'s, of `body` alone, under a row lock: the columns copied out of it never change.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, column, func, select, table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from worker.models import Decision, ReviewInfo, Verdict
from worker.stores.base import VerdictQuery, reviewed, unique_ids
from worker.stores.engine import UtcDateTime, make_engine, unavailable_on_failure, write_transaction
from worker.stores.migrations import migrate as run_migrations

_GET_MANY_CHUNK = 500
"""Ids per `IN (...)` query: well below SQLite's and PostgreSQL's bound-parameter limits."""

# The query-time view of the table; its definition (DDL) lives in migrations.py.
_verdicts = table(
    "verdicts",
    column("id", Text),
    column("status", Text),
    column("rating", Text),
    column("category", Text),
    column("policy_name", Text),
    column("image_sha256", Text),
    column("created_at", UtcDateTime()),
    column("completed_at", UtcDateTime()),
    column("body", Text),
    column("audit", Text),
    column("decision", Text),
)


class SqlVerdictStore:
    """`url`: `sqlite:///path`, or `postgresql://`, `postgres://`, `postgresql+psycopg://` (all psycopg 3).

    Construction migrates the schema unless `migrate=False`; an unreachable database raises StoreUnavailable.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.engine = make_engine(url)
        try:
            if migrate:
                with unavailable_on_failure("migrating the schema"):
                    run_migrations(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"SqlVerdictStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def save(self, verdict: Verdict) -> bool:
        statement = self._insert_if_absent(_row(verdict))
        with unavailable_on_failure("saving a verdict"), write_transaction(self.engine) as conn:
            # psycopg 3 forgets rowcount once the cursor closes; keep it (SQLAlchemy >= 2.0.28).
            result = conn.execute(statement, execution_options={"preserve_rowcount": True})
            return result.rowcount == 1

    def get(self, id: str) -> Verdict | None:
        statement = select(_verdicts.c.body).where(_verdicts.c.id == id)
        with unavailable_on_failure("reading a verdict"), self.engine.connect() as conn:
            body = conn.scalar(statement)
        return None if body is None else Verdict.model_validate_json(body)

    def get_many(self, ids: Iterable[str]) -> dict[str, Verdict]:
        wanted = unique_ids(ids)
        found: dict[str, Verdict] = {}
        with unavailable_on_failure("reading verdicts"), self.engine.connect() as conn:
            for start in range(0, len(wanted), _GET_MANY_CHUNK):
                chunk = wanted[start : start + _GET_MANY_CHUNK]
                statement = select(_verdicts.c.id, _verdicts.c.body).where(_verdicts.c.id.in_(chunk))
                for id, body in conn.execute(statement):
                    found[id] = Verdict.model_validate_json(body)
        return found

    def list(self, query: VerdictQuery) -> builtins.list[Verdict]:
        statement = self._select_bodies(query)
        with unavailable_on_failure("listing verdicts"), self.engine.connect() as conn:
            bodies = builtins.list(conn.scalars(statement))
        return [Verdict.model_validate_json(body) for body in bodies]

    def count(self) -> int:
        statement = select(func.count()).select_from(_verdicts)
        with unavailable_on_failure("counting verdicts"), self.engine.connect() as conn:
            return int(conn.scalar(statement) or 0)

    def record_review(self, id: str, review: ReviewInfo, decision: Decision) -> Verdict | None:
        read = select(_verdicts.c.body).where(_verdicts.c.id == id).with_for_update()
        with unavailable_on_failure("recording a review"), write_transaction(self.engine) as conn:
            body = conn.scalar(read)
            if body is None:
                return None
            verdict = reviewed(Verdict.model_validate_json(body), review, decision)
            conn.execute(update(_verdicts).where(_verdicts.c.id == id).values(body=verdict.model_dump_json()))
        return verdict

    def close(self) -> None:
        self.engine.dispose()

    def _insert_if_absent(self, row: dict[str, Any]) -> Insert:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(_verdicts).values(row).on_conflict_do_nothing(index_elements=["id"])
        return sqlite.insert(_verdicts).values(row).on_conflict_do_nothing(index_elements=["id"])

    def _select_bodies(self, query: VerdictQuery) -> Select[str]:
        statement = select(_verdicts.c.body)
        if query.rating is not None:
            statement = statement.where(_verdicts.c.rating == query.rating)
        if query.category is not None:
            statement = statement.where(_verdicts.c.category == query.category)
        if query.status is not None:
            statement = statement.where(_verdicts.c.status == query.status)
        if query.audit is not None:
            statement = statement.where(_verdicts.c.audit == query.audit)
        if query.decision is not None:
            statement = statement.where(_verdicts.c.decision == query.decision)
        if query.since is not None:
            statement = statement.where(_verdicts.c.completed_at >= query.since)
        if query.until is not None:
            statement = statement.where(_verdicts.c.completed_at < query.until)
        statement = statement.order_by(_verdicts.c.completed_at, self._binary_id())
        return statement if query.limit is None else statement.limit(query.limit)

    def _binary_id(self) -> ColumnElement[str]:
        """Order ids by code point, like SQLite and Python do, not by PostgreSQL's locale collation."""
        if self.engine.dialect.name == "postgresql":
            return _verdicts.c.id.collate("C")
        return _verdicts.c.id


def _row(verdict: Verdict) -> dict[str, Any]:
    return {
        "id": verdict.id,
        "status": verdict.status,
        "rating": verdict.rating,
        "category": verdict.category,
        "policy_name": verdict.policy.name,
        "image_sha256": verdict.image.sha256,
        "created_at": verdict.created_at,
        "completed_at": verdict.completed_at,
        "body": verdict.model_dump_json(),
        "audit": verdict.audit,
        "decision": verdict.decision,
    }
