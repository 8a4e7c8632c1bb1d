"""An audit's queue: compact batch messages, one record per batch instead of a marker key per image.

Per queued image Redis holds only what differs per image (its id and the tail of its reference, inside a
`moderate_batch` message that says the policy, codes and audit name once, see `worker/batch_format.py`) and
16 bytes of its id in the audit's record `llavaguard:audit-queued:<name>`, a hash with one field per batch
still queued or running. The record is written before its message is published and removed if publishing
fails, so it always covers every queued image; the worker deletes the field once the batch's verdicts are
stored. A rerun reads the record once (`queued()`), before it reads any verdict: an id in the record without
a verdict is queued (resumed, not published again); an id in neither was never queued or lost with its
record, and is published. A record whose message is in no queue (the audit was SIGKILLed between the two, or
the queue was lost) is found by `waiting.py` and `forget`-ed, then its images are published again.

The SDK's per-image markers (`llavaguard:submitted:<id>`, `producers/publish.py`) are not used here: audit
ids are derived, never handed to a caller who would ask the API for a `pending` status.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from worker.queues import AUDIT_QUEUED_KEY, BULK_QUEUE, MODERATE_BATCH_TASK, PRIORITY_SEP, PRIORITY_STEPS

ID_BYTES = 16
"""Audit ids are 32 hex digits (`producers.ids`): kept as their 16 bytes in the record."""


@dataclass(frozen=True)
class Item:
    id: str
    reference: str
    metadata: dict[str, Any]


@dataclass
class AuditQueue:
    app: Celery
    redis: redis.Redis[bytes]
    name: str
    queue: str = BULK_QUEUE

    @property
    def key(self) -> str:
        return AUDIT_QUEUED_KEY + self.name

    def queued(self) -> set[str]:
        """Every id of the batches recorded as queued or running."""
        return {i for packed in self.redis.hvals(self.key) for i in _unpack(packed)}

    def publish(self, shared: dict[str, Any], items: list[Item]) -> None:
        """Record, then publish one compact batch message of `items` (all of them new)."""
        if not items:
            return
        field = items[0].id[:16]
        self.redis.hset(self.key, field, b"".join(bytes.fromhex(i.id) for i in items))
        prefix = _common_prefix([i.reference for i in items])
        message = {"shared": shared, "prefix": prefix, "queued": [self.key, field],
                   "items": [_compact(i, len(prefix)) for i in items]}
        try:
            self.app.send_task(MODERATE_BATCH_TASK, args=[message], queue=self.queue, argsrepr="", kwargsrepr="")
        except BaseException:
            self.redis.hdel(self.key, field)
            raise

    def forget(self, ids: Iterable[str]) -> None:
        """Drop the records of batches holding any of `ids` (their messages are lost), so they can be published."""
        lost = set(ids)
        stale = [field for field, packed in self.redis.hgetall(self.key).items() if lost & set(_unpack(packed))]
        if stale:
            self.redis.hdel(self.key, *stale)

    def prune(self, judged: set[str]) -> None:
        """Drop records whose every id is `judged` (a worker stopped between storing and clearing)."""
        done = [field for field, packed in self.redis.hgetall(self.key).items() if set(_unpack(packed)) <= judged]
        if done:
            self.redis.hdel(self.key, *done)

    def waiting_messages(self) -> int:
        """Messages waiting in the queue's lists (every priority step), whoever published them."""
        pipe = self.redis.pipeline(transaction=False)
        for step in PRIORITY_STEPS:
            pipe.llen(f"{self.queue}{PRIORITY_SEP}{step}" if step else self.queue)
        return sum(int(n) for n in pipe.execute())


def _unpack(packed: bytes) -> list[str]:
    return [packed[n:n + ID_BYTES].hex() for n in range(0, len(packed), ID_BYTES)]


def _compact(item: Item, cut: int) -> list[Any]:
    return [item.id, item.reference[cut:], item.metadata] if item.metadata else [item.id, item.reference[cut:]]


def _common_prefix(references: list[str]) -> str:
    """The longest prefix every reference shares, ending at a `/` (folder or bucket prefix)."""
    prefix = os.path.commonprefix(references)  # noqa: RUF071 (character-wise on purpose: URIs, not paths)
    return prefix[:prefix.rfind("/") + 1]
