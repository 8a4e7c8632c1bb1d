"""After the store: queue a verdict marked for review and announce it (`moderation.review_requested`).

Idempotent like every hook: the queue add is ZADD NX, the webhook's delivery id is derived from (id, event,
URL) and created only if absent, so a redelivered task (`first=False`) changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis

from worker.errors import ReviewUnavailable
from worker.models import ModerationRequest, Verdict
from worker.notify.events import REVIEW_REQUESTED
from worker.notify.outbox import Outbox
from worker.review.announce import announce
from worker.review.queue import ReviewQueue


class ReviewHook:
    """A `worker.pipeline.VerdictHook`."""

    def __init__(self, queue: ReviewQueue, outbox: Outbox, endpoints: Sequence[str],
                 clock: Callable[[], float] = time.time) -> None:
        self.queue = queue
        self.outbox = outbox
        self.endpoints = tuple(endpoints)
        self.clock = clock

    def __call__(self, request: ModerationRequest, verdict: Verdict, first: bool) -> None:
        if verdict.review is None or verdict.review.status != "pending":
            return
        try:
            self.queue.add(verdict.id, at=verdict.review.requested_at.timestamp())
        except redis.RedisError as exc:
            raise ReviewUnavailable(f"cannot queue the verdict for review: {exc}") from exc
        announce(self.outbox, self.endpoints, REVIEW_REQUESTED, verdict, now=self.clock())
