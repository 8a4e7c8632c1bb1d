"""Retained copies: the exact bytes the model saw, kept in Redis only while their item is under review.

Each copy expires by its own TTL (`retention_s`), so it is deleted on time whether or not any process is
running; a label deletes it sooner (the desk decides). The number of copies is bounded (`max_items`; each
is one prepared JPEG, at most the intake's side limit), so a flood of review items cannot fill Redis: beyond
the bound an item is still queued, its image is just not kept (the API answers 404 for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker.review.keys import IMAGE_KEY, IMAGES_KEY


@dataclass(frozen=True)
class RetainedImage:
    data: bytes
    mime: str


class RetainedImages:
    def __init__(self, client: redis.Redis[bytes], *, retention_s: int, max_items: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.retention_s = retention_s
        self.max_items = max_items
        self.clock = clock

    def retain(self, verdict_id: str, data: bytes, mime: str) -> bool:
        """Keep a copy for the retention; False when the bound is reached (nothing kept)."""
        now = self.clock()
        self.redis.zremrangebyscore(IMAGES_KEY, "-inf", now)  # copies whose TTL ended are gone already
        if self.redis.zscore(IMAGES_KEY, verdict_id) is None and self.redis.zcard(IMAGES_KEY) >= self.max_items:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(IMAGE_KEY + verdict_id, mapping={"mime": mime, "data": data})
        pipe.expire(IMAGE_KEY + verdict_id, self.retention_s)
        pipe.zadd(IMAGES_KEY, {verdict_id: now + self.retention_s})
        pipe.execute()
        return True

    def get(self, verdict_id: str) -> RetainedImage | None:
        fields = self.redis.hgetall(IMAGE_KEY + verdict_id)
        if b"data" not in fields:
            return None
        return RetainedImage(fields[b"data"], fields.get(b"mime", b"application/octet-stream").decode())

    def delete(self, verdict_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(IMAGE_KEY + verdict_id)
        pipe.zrem(IMAGES_KEY, verdict_id)
        pipe.execute()
