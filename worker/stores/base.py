"""The verdict store interface, and the query value object every implementation filters with.

A store is the system of record for verdicts. Its one hard promise is `save`'s: a verdict id is written at
most once, whoever races for it (a Celery task redelivered after a lost ack, several worker processes), and
the first write wins forever. Nothing here may ever delete a stored verdict, and the one change ever made to
one is `record_review`'s (issue 11): a human's label and the final decision, the model's answer untouched.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, get_args, runtime_checkable

from worker.categories import CATEGORIES, RATINGS, category_for_code
from worker.models import Decision, ReviewInfo, Status, Verdict

DEFAULT_LIST_LIMIT = 100


@runtime_checkable
class VerdictStore(Protocol):
    """Where verdicts are kept; every implementation passes `tests/contract/test_stores.py`.

    Connection failures surface as `StoreUnavailable` (retry later), never as a library's own exception.
    """

    def save(self, verdict: Verdict) -> bool:
        """Store `verdict` unless its id is already stored; True if this call stored it.

        Atomic: of any number of concurrent calls for one id, exactly one returns True, and the stored
        verdict is that call's, unchanged by the others.
        """
        ...

    def get(self, id: str) -> Verdict | None:
        """The stored verdict, or None if there is none with this id."""
        ...

    def get_many(self, ids: Iterable[str]) -> dict[str, Verdict]:
        """The stored verdicts among `ids`, by id; unknown ids are left out."""
        ...

    def list(self, query: VerdictQuery) -> builtins.list[Verdict]:
        """Verdicts ordered by (completed_at, id), selected as `query` describes."""
        ...

    def count(self) -> int:
        """How many verdicts are stored."""
        ...

    def record_review(self, id: str, review: ReviewInfo, decision: Decision) -> Verdict | None:
        """Set the stored verdict's `review` and `decision` (every other field stays as first saved); the
        verdict as now stored, or None if there is none with this id."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def normalise_rating(value: str) -> str:
    """`"unsafe"` -> `"Unsafe"`; ValueError for anything that is not a rating."""
    for rating in RATINGS:
        if value.strip().lower() == rating.lower():
            return rating
    raise ValueError(f"unknown rating {value!r}: expected one of {', '.join(RATINGS)}")


def normalise_category(value: str) -> str:
    """A full category string or just its code (`"O4"`, `"na"`) -> the full string; ValueError otherwise."""
    text = value.strip()
    if ":" in text:
        for category in CATEGORIES:
            if text.lower() == category.lower():
                return category
        raise ValueError(f"unknown category {value!r}")
    try:
        return category_for_code(text)
    except KeyError:
        raise ValueError(f"unknown category {value!r}") from None


def normalise_decision(value: str) -> str:
    """`"Block"` -> `"block"`; ValueError for anything that is not a decision."""
    decisions = get_args(Decision)
    text = value.strip().lower()
    if text not in decisions:
        raise ValueError(f"unknown decision {value!r}: expected one of {', '.join(decisions)}")
    return text


def normalise_status(value: str) -> str:
    """`"Failed"` -> `"failed"`; ValueError for anything that is not a verdict status."""
    statuses = get_args(Status)
    text = value.strip().lower()
    if text not in statuses:
        raise ValueError(f"unknown status {value!r}: expected one of {', '.join(statuses)}")
    return text


@dataclass(frozen=True)
class VerdictQuery:
    """What one `list` call selects: equality on rating, category, status, audit and decision, completed_at in
    [since, until), at most `limit` (None: all). The one argument of every store's `list`.

    `until` is exclusive so that consecutive windows tile without returning a verdict twice. Build it with
    `build`, which normalises what a person types (`"unsafe"`, `"O4"`, a non-UTC instant) and refuses the rest
    with ValueError; stores trust a query's fields to be normalised.
    """

    rating: str | None = None
    category: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = DEFAULT_LIST_LIMIT
    status: str | None = None
    """`completed` or `failed`."""
    audit: str | None = None
    """The audit name recorded on the verdicts (`Verdict.audit`)."""
    decision: str | None = None
    """`allow`, `review` or `block` (`Verdict.decision`, issue 11)."""

    @classmethod
    def build(
        cls,
        *,
        rating: str | None = None,
        category: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = DEFAULT_LIST_LIMIT,
        status: str | None = None,
        audit: str | None = None,
        decision: str | None = None,
    ) -> VerdictQuery:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        return cls(
            rating=None if rating is None else normalise_rating(rating),
            category=None if category is None else normalise_category(category),
            since=None if since is None else as_utc(since),
            until=None if until is None else as_utc(until),
            limit=limit,
            status=None if status is None else normalise_status(status),
            audit=audit,
            decision=None if decision is None else normalise_decision(decision),
        )

    def matches(self, verdict: Verdict) -> bool:
        completed_at = as_utc(verdict.completed_at)
        return (
            (self.rating is None or verdict.rating == self.rating)
            and (self.category is None or verdict.category == self.category)
            and (self.status is None or verdict.status == self.status)
            and (self.audit is None or verdict.audit == self.audit)
            and (self.decision is None or verdict.decision == self.decision)
            and (self.since is None or completed_at >= self.since)
            and (self.until is None or completed_at < self.until)
        )

    def apply(self, verdicts: Iterable[Verdict]) -> builtins.list[Verdict]:
        """Filter, order and cut in memory: what stores without a query engine do."""
        selected = sorted((v for v in verdicts if self.matches(v)), key=sort_key)
        return selected if self.limit is None else selected[: self.limit]


def reviewed(verdict: Verdict, review: ReviewInfo, decision: Decision) -> Verdict:
    """`verdict` with a human's review and the final decision: the one update `record_review` makes."""
    return verdict.model_copy(update={"review": review, "decision": decision})


def sort_key(verdict: Verdict) -> tuple[datetime, str]:
    """The order of `list`: completion instant, then id by code point (as SQL's binary collation does)."""
    return as_utc(verdict.completed_at), verdict.id


def unique_ids(ids: Iterable[str]) -> builtins.list[str]:
    """`ids` without repeats, in first-seen order; refuses a bare string (it would iterate its characters)."""
    if isinstance(ids, str):
        raise TypeError("get_many takes a collection of ids, not one id string")
    return builtins.list(dict.fromkeys(ids))
