"""Publishing with the enqueued-once guarantee: mark each moderation id, then publish what was newly marked.

The marker `llavaguard:submitted:<id>` (`SET NX`) is what makes an id enqueued at most once, whoever
submits it again (a retried HTTP call, a rerun audit). Markers for many requests are set in one pipelined
round trip and their messages go out through one held producer connection, so submitting a thousand images
costs a handful of round trips, not thousands of connection checkouts. A publish that fails (or is
interrupted, Ctrl-C included) removes the markers it set but did not publish, so a retry enqueues them.

Beside each marker, a submission record (`llavaguard:submission:<id>`, see `producers.ids`) keeps the owner
and the request's fingerprint; marker and record are set in one transaction, so a key reused for another
request is refused (`IdempotencyConflict`, nothing published) even when two producers race.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery

from worker.errors import IdempotencyConflict
from worker.models import ModerationRequest
from worker.queues import (
    MODERATE_BATCH_TASK,
    MODERATE_TASK,
    SUBMISSION_KEY,
    SUBMITTED_KEY,
    SUBMITTED_TTL_S,
    redis_priority,
)


class Publisher:
    """Marks and publishes moderation requests onto one queue."""

    def __init__(self, app: Celery, client: redis.Redis[bytes], queue: str) -> None:
        self.app = app
        self.redis = client
        self.queue = queue

    def publish_each(
        self, requests: list[ModerationRequest], records: list[str | None] | None = None
    ) -> list[bool]:
        """One task message per request not enqueued before; for each request, whether this call enqueued it.

        `records` (one per request, None for none) are the submission records; IdempotencyConflict if one
        differs from the record already stored under its id."""
        fresh = self._mark([r.id for r in requests], records)
        pending = [r for r, new in zip(requests, fresh, strict=True) if new]
        published = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for request in pending:
                    self.app.send_task(
                        MODERATE_TASK, args=[request.model_dump(mode="json")], queue=self.queue,
                        priority=redis_priority(request.priority), producer=producer,
                    )
                    published += 1
        except BaseException:
            self._unmark([r.id for r in pending[published:]])
            raise
        return fresh

    def publish_batch(self, requests: list[ModerationRequest]) -> list[str]:
        """One `moderate_batch` message with the requests not enqueued before; returns their ids."""
        fresh = self._mark([r.id for r in requests])
        pending = [r for r, new in zip(requests, fresh, strict=True) if new]
        if not pending:
            return []
        try:
            self.app.send_task(
                MODERATE_BATCH_TASK, args=[[r.model_dump(mode="json") for r in pending]], queue=self.queue,
            )
        except BaseException:
            self._unmark([r.id for r in pending])
            raise
        return [r.id for r in pending]

    def record(self, moderation_id: str) -> bytes | None:
        """The submission record beside an enqueued marker (None: none, or not enqueued)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(SUBMITTED_KEY + moderation_id)
        pipe.get(SUBMISSION_KEY + moderation_id)
        marked, record = pipe.execute()
        return record if marked and isinstance(record, bytes) else None

    def submitted(self, ids: Iterable[str]) -> set[str]:
        """The ids among `ids` that carry an enqueued marker (one pipelined round trip)."""
        wanted = list(ids)
        pipe = self.redis.pipeline(transaction=False)
        for moderation_id in wanted:
            pipe.exists(SUBMITTED_KEY + moderation_id)
        return {i for i, found in zip(wanted, pipe.execute(), strict=True) if found}

    def forget(self, ids: Iterable[str]) -> None:
        """Drop the markers of `ids` (their messages are known to be lost), so they can be enqueued again."""
        self._unmark(list(ids))

    def _mark(self, ids: list[str], records: list[str | None] | None = None) -> list[bool]:
        """`SET NX` every marker (and record) in one transaction; True where this call set the marker."""
        if not ids:
            return []
        wanted = records or [None] * len(ids)
        pipe = self.redis.pipeline(transaction=True)
        for moderation_id, record in zip(ids, wanted, strict=True):
            pipe.set(SUBMITTED_KEY + moderation_id, self.queue, nx=True, ex=SUBMITTED_TTL_S)
            if record is not None:
                pipe.set(SUBMISSION_KEY + moderation_id, record, nx=True, ex=SUBMITTED_TTL_S)
                pipe.get(SUBMISSION_KEY + moderation_id)
        results: list[Any] = pipe.execute()
        fresh, conflict, position = [], None, 0
        for index, record in enumerate(wanted):
            fresh.append(bool(results[position]))
            if record is not None:
                stored = results[position + 2]
                if conflict is None and stored is not None and stored.decode() != record:
                    conflict = index
                position += 3
            else:
                position += 1
        if conflict is not None:
            self._unmark([i for i, new in zip(ids, fresh, strict=True) if new])
            raise IdempotencyConflict("the idempotency key was already used for a different request (another "
                                      "image or other options); use a new key", index=conflict)
        return fresh

    def _unmark(self, ids: list[str]) -> None:
        if ids:
            self.redis.delete(*(SUBMITTED_KEY + i for i in ids), *(SUBMISSION_KEY + i for i in ids))
