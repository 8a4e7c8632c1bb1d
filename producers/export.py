"""Export verdicts from the store as JSON lines or CSV, filtered, streaming (`llavaguard export`).

Every row carries `image.source` (the URL/URI the image was read from; for an audited folder, the `file://`
path or the uploaded `s3://` key, with the original relative path in `metadata.file`), so a dataset curator
can drop exactly the flagged files. The store is read page by page in (completed_at, id) order, so an export
of millions of verdicts holds one page in memory.

`--reviewed` (issue 11) exports only the verdicts a human has labelled, with the model's answer and the human's
side by side: data for evaluating the model and for fine-tuning it.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TextIO

from worker.models import Verdict
from worker.stores import VerdictQuery, VerdictStore
from worker.stores.base import sort_key

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = (
    "id", "status", "rating", "category", "rationale", "image_source", "image_sha256", "image_width",
    "image_height", "image_format", "policy", "policy_sha256", "model", "error_code", "error_message",
    "metadata", "created_at", "completed_at", "audit", "decision", "score",
)
REVIEWED_COLUMNS = (
    "id", "image_source", "image_sha256", "policy", "model_rating", "model_category", "score", "human_rating",
    "human_category", "note", "reviewer", "reviewed_at", "decision",
)
"""`--reviewed --format csv`: the model's answer, then the human's label, then the decision that stands."""
PAGE_SIZE = 1000
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_instant(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or date-time (UTC unless it says otherwise), or an age: `30m`, `24h`, `7d` ago."""
    value = text.strip()
    relative = _RELATIVE.match(value.lower())
    if relative:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO 8601 date/time or an age like 24h or 7d, got {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iter_verdicts(store: VerdictStore, query: VerdictQuery, *, page_size: int = PAGE_SIZE) -> Iterator[Verdict]:
    """Every verdict the query selects, in (completed_at, id) order, fetched a page at a time."""
    since, after, limit, remaining = query.since, None, page_size, query.limit
    while remaining is None or remaining > 0:
        page = store.list(replace(query, since=since, limit=limit))
        fresh = [v for v in page if after is None or sort_key(v) > after]
        yield from fresh[:remaining]
        if remaining is not None:
            remaining -= min(len(fresh), remaining)
        if len(page) < limit:
            return
        if not fresh:  # a whole page on one instant, all seen: widen the page
            limit *= 2
            continue
        since, after, limit = fresh[-1].completed_at, sort_key(fresh[-1]), page_size


def csv_row(verdict: Verdict) -> dict[str, object]:
    return {
        "id": verdict.id, "status": verdict.status, "rating": verdict.rating, "category": verdict.category,
        "rationale": verdict.rationale, "image_source": verdict.image.source, "image_sha256": verdict.image.sha256,
        "image_width": verdict.image.width, "image_height": verdict.image.height,
        "image_format": verdict.image.format, "policy": verdict.policy.name, "policy_sha256": verdict.policy.sha256,
        "model": verdict.model, "error_code": verdict.error.code if verdict.error else None,
        "error_message": verdict.error.message if verdict.error else None,
        "metadata": json.dumps(verdict.metadata, separators=(",", ":")) if verdict.metadata else "",
        "created_at": verdict.created_at.isoformat(), "completed_at": verdict.completed_at.isoformat(),
        "audit": verdict.audit, "decision": verdict.decision, "score": verdict.score,
    }


def reviewed_row(verdict: Verdict) -> dict[str, object]:
    review = verdict.review
    return {
        "id": verdict.id, "image_source": verdict.image.source, "image_sha256": verdict.image.sha256,
        "policy": verdict.policy.name, "model_rating": verdict.rating, "model_category": verdict.category,
        "score": verdict.score, "human_rating": review.rating if review else None,
        "human_category": review.category if review else None, "note": review.note if review else None,
        "reviewer": review.reviewer if review else None,
        "reviewed_at": review.reviewed_at.isoformat() if review and review.reviewed_at else None,
        "decision": verdict.decision,
    }


def is_reviewed(verdict: Verdict) -> bool:
    return verdict.review is not None and verdict.review.status == "reviewed"


def reviewed_only(verdicts: Iterable[Verdict], limit: int | None) -> Iterator[Verdict]:
    """The reviewed ones among `verdicts`, at most `limit` (the store's query cannot select them itself, so
    the caller lists without a limit and the limit applies here)."""
    return itertools.islice((v for v in verdicts if is_reviewed(v)), limit)


def write(verdicts: Iterator[Verdict], out: TextIO, fmt: str = "jsonl", *, reviewed: bool = False) -> int:
    """Write verdicts in `fmt` (CSV: the reviewed columns when `reviewed`); how many were written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    written = 0
    columns, row = (REVIEWED_COLUMNS, reviewed_row) if reviewed else (CSV_COLUMNS, csv_row)
    writer = csv.DictWriter(out, fieldnames=columns) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for verdict in verdicts:
        if writer is not None:
            writer.writerow(row(verdict))
        else:
            out.write(verdict.model_dump_json() + "\n")
        written += 1
    return written
