"""The review queue: two sorted sets in Redis, pending (by when queued) and reviewed (by when labelled)."""

from __future__ import annotations

from typing import Literal

import redis

from worker.review.keys import PENDING_KEY, REVIEWED_KEPT, REVIEWED_KEY

ReviewStatus = Literal["pending", "reviewed"]


class ReviewQueue:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.redis = client

    def add(self, verdict_id: str, *, at: float) -> bool:
        """Queue an id unless it is queued or was reviewed already (a redelivered task adds nothing)."""
        if self.redis.zscore(REVIEWED_KEY, verdict_id) is not None:
            return False
        return bool(self.redis.zadd(PENDING_KEY, {verdict_id: at}, nx=True))

    def mark_reviewed(self, verdict_id: str, *, at: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(PENDING_KEY, verdict_id)
        pipe.zadd(REVIEWED_KEY, {verdict_id: at})
        pipe.zremrangebyrank(REVIEWED_KEY, 0, -REVIEWED_KEPT - 1)
        pipe.execute()

    def ids(self, status: ReviewStatus, *, limit: int) -> list[str]:
        """Oldest first for pending (the next to review), newest first for reviewed."""
        if status == "pending":
            found = self.redis.zrange(PENDING_KEY, 0, limit - 1)
        else:
            found = self.redis.zrevrange(REVIEWED_KEY, 0, limit - 1)
        return [item.decode() for item in found]

    def count(self, status: ReviewStatus) -> int:
        return int(self.redis.zcard(PENDING_KEY if status == "pending" else REVIEWED_KEY))
