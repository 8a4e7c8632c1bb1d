"""What a reviewer does: list the queue, look at an item and its retained image, record a label.

Used alike by the HTTP API and `llavaguard review`. A label is recorded once: the store first (the system of
record: `record_review` sets the human's final decision beside the model's answer), then the queue, the
retained copy and the `moderation.reviewed` event. Repeating the same label repeats those later steps (all
idempotent), so a label whose event could not be recorded is completed by sending it again; a different
label for a labelled item is a `ReviewConflict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from worker.errors import ReviewConflict, ReviewNotFound
from worker.models import Decision, Verdict
from worker.notify.events import REVIEWED
from worker.notify.outbox import Outbox
from worker.review.announce import announce
from worker.review.queue import ReviewQueue, ReviewStatus
from worker.review.retention import RetainedImage, RetainedImages
from worker.stores import VerdictStore
from worker.stores.base import normalise_category, normalise_rating

MAX_NOTE_CHARS = 2000


def human_decision(rating: str) -> Decision:
    """A reviewer's rating is the final decision: Unsafe blocks, Safe allows."""
    return "block" if rating == "Unsafe" else "allow"


class ReviewDesk:
    def __init__(
        self, store: VerdictStore, queue: ReviewQueue, images: RetainedImages, outbox: Outbox,
        endpoints: Sequence[str], *, keep_after_label: bool = False, clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.queue = queue
        self.images = images
        self.outbox = outbox
        self.endpoints = tuple(endpoints)
        self.keep_after_label = keep_after_label
        self.clock = clock

    def items(self, status: ReviewStatus = "pending", *, limit: int = 50) -> list[Verdict]:
        """The queue's verdicts in queue order (ids whose verdict is gone are left out)."""
        ids = self.queue.ids(status, limit=limit)
        found = self.store.get_many(ids)
        return [found[i] for i in ids if i in found and found[i].review is not None]

    def get(self, verdict_id: str) -> Verdict:
        verdict = self.store.get(verdict_id)
        if verdict is None or verdict.review is None:
            raise ReviewNotFound(f"no review item {verdict_id!r}")
        return verdict

    def image(self, verdict_id: str) -> RetainedImage | None:
        """The retained copy; None once deleted (labelled, expired) or never kept."""
        return self.images.get(verdict_id)

    def label(self, verdict_id: str, rating: str, category: str, note: str | None, reviewer: str) -> Verdict:
        """Record a human label (ValueError for an unknown rating or category, or a note too long)."""
        rating, category = normalise_rating(rating), normalise_category(category)
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise ValueError(f"note: at most {MAX_NOTE_CHARS} characters")
        verdict = self.get(verdict_id)
        assert verdict.review is not None
        if verdict.review.status == "reviewed":
            done = verdict.review
            if (done.rating, done.category, done.note) != (rating, category, note):
                raise ReviewConflict(f"{verdict_id} was labelled already ({done.rating}, by {done.reviewer})")
            return self._finish(verdict)
        now = self.clock()
        label = verdict.review.model_copy(update={
            "status": "reviewed", "rating": rating, "category": category, "note": note, "reviewer": reviewer,
            "reviewed_at": datetime.fromtimestamp(now, UTC),
        })
        stored = self.store.record_review(verdict_id, label, human_decision(rating))
        if stored is None:
            raise ReviewNotFound(f"no review item {verdict_id!r}")
        return self._finish(stored)

    def _finish(self, verdict: Verdict) -> Verdict:
        assert verdict.review is not None and verdict.review.reviewed_at is not None
        now = self.clock()
        self.queue.mark_reviewed(verdict.id, at=verdict.review.reviewed_at.timestamp())
        if not self.keep_after_label:
            self.images.delete(verdict.id)
        announce(self.outbox, self.endpoints, REVIEWED, verdict, now=now)
        return verdict
