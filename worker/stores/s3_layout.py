"""Where the S3 store puts a verdict, and how a listed key name tells what a verdict is without reading it.

Under `<prefix>/verdicts/` (the store's root) every verdict is written twice, with the same JSON body:

    by-id/<id>.json                                   get by id: one GET
    dt=<YYYY-MM-DD>/t=<HHMMSS.ffffff>Z,id=<id>,status=<status>,rating=<rating>,category=<code>,audit=<audit>,decision=<decision>.json

The second is a Hive-style day partition (`dt=`, the UTC day of `completed_at`): the AWS CLI, DuckDB or Athena
read a day by its prefix, and `list` selects by time, status, rating, category and audit from key names alone,
reading only the objects it returns. Key names sort by completion instant (fixed-width UTC time), so a listing
from `StartAfter` walks forward in time. Values in a key name are percent-encoded (`urllib.parse.quote`, no
safe characters), so a `,` or `=` in an id or audit name cannot be mistaken for a separator; `-` stands for
"none" (a failed verdict's rating and category, a verdict of no audit). Keys written before verdicts had a
decision (issue 11) end at `audit=`: they still parse, with no decision, as those verdicts have none.

Stores written before this layout kept only `<id>.json` directly under the root ("legacy" objects): the store
still reads, lists and counts them, and never writes new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from worker.models import Verdict
from worker.stores.base import VerdictQuery, as_utc, normalise_category

BY_ID = "by-id/"
PARTITION = "dt="
_TIME_FORMAT = "%H%M%S.%f"
_NONE = "-"
_FIELDS = ("t", "id", "status", "rating", "category", "audit", "decision")
_FIELDS_BEFORE_DECISIONS = _FIELDS[:-1]


def id_key(root: str, id: str) -> str:
    return f"{root}{BY_ID}{id}.json"


def legacy_key(root: str, id: str) -> str:
    return f"{root}{id}.json"


def day_prefix(root: str, day: datetime) -> str:
    """`<root>dt=2026-12-02/`: everything completed on that UTC day."""
    return f"{root}{PARTITION}{as_utc(day).date().isoformat()}/"


def start_after(root: str, since: datetime) -> str:
    """A key just before every entry completed at or after `since` (S3's `StartAfter` is exclusive)."""
    instant = as_utc(since)
    return f"{day_prefix(root, instant)}t={instant.strftime(_TIME_FORMAT)}Z"


def _code(category: str | None) -> str:
    return _NONE if category is None else category.split(":", 1)[0]


def _q(value: str | None) -> str:
    return _NONE if value is None else quote(value, safe="")


def entry_key(root: str, verdict: Verdict) -> str:
    instant = as_utc(verdict.completed_at)
    values = (f"{instant.strftime(_TIME_FORMAT)}Z", _q(verdict.id), verdict.status, _q(verdict.rating),
              _q(_code(verdict.category)), _q(verdict.audit), _q(verdict.decision))
    name = ",".join(f"{field}={value}" for field, value in zip(_FIELDS, values, strict=True))
    return f"{day_prefix(root, instant)}{name}.json"


@dataclass(frozen=True)
class Entry:
    """What a day-partition key name says about its verdict."""

    key: str
    completed_at: datetime
    id: str
    status: str
    rating: str | None
    category: str | None
    audit: str | None
    decision: str | None = None

    def matches(self, query: VerdictQuery) -> bool:
        return (
            (query.rating is None or self.rating == query.rating)
            and (query.category is None or self.category == query.category)
            and (query.status is None or self.status == query.status)
            and (query.audit is None or self.audit == query.audit)
            and (query.decision is None or self.decision == query.decision)
            and (query.since is None or self.completed_at >= query.since)
            and (query.until is None or self.completed_at < query.until)
        )

    @property
    def order(self) -> tuple[datetime, str]:
        return self.completed_at, self.id


def parse_entry(root: str, key: str) -> Entry | None:
    """The entry a key names, or None for a key that is not one (a file someone else put there)."""
    rest = key[len(root):] if key.startswith(root + PARTITION) else ""
    day, _, name = rest[len(PARTITION):].partition("/")
    if not name.endswith(".json") or "/" in name:
        return None
    pairs = [part.partition("=") for part in name[: -len(".json")].split(",")]
    if tuple(field for field, _, _ in pairs) not in (_FIELDS, _FIELDS_BEFORE_DECISIONS):
        return None
    values = {field: value for field, _, value in pairs}
    try:
        clock = datetime.strptime(values["t"].removesuffix("Z"), _TIME_FORMAT).time()
        completed_at = datetime.combine(datetime.fromisoformat(day).date(), clock, tzinfo=UTC)
        category = None if values["category"] == _NONE else normalise_category(unquote(values["category"]))
    except ValueError:
        return None
    return Entry(key, completed_at, unquote(values["id"]), values["status"], _none_or(values["rating"]), category,
                 _none_or(values["audit"]), _none_or(values.get("decision", _NONE)))


def _none_or(value: str) -> str | None:
    return None if value == _NONE else unquote(value)
