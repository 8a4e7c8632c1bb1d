"""An audit's queue: compact batch messages, one record per batch instead of a marker key per image.

Per queued image Redis holds only what differs per image (its id and the tail of its reference, inside a
`moderate_batch` message that says the policy, codes and audit name once, see `worker/batch_format.py`) and
16 bytes of its id in the audit's record `llavaguard:audit-queued:<name>`, a hash with one field per batch
still queued or running. Record and message are written in one MULTI (many batches per round trip, the
message built as the wire contract says, without kombu's per-message overhead), so neither exists without
the other and the record always covers every queued image; the worker deletes the field once the batch's verdicts are
stored. A rerun reads the record once (`queued()`), before it reads any verdict: an id in the record without
a verdict is queued (resumed, not published again); an id in neither was never queued, and is published.
A record whose message is in no queue (the queue was lost: a Redis without persistence restarted, a purge)
is found by `waiting.py` and `forget`-ed, then its images are published again.

The SDK's per-image markers (`llavaguard:submitted:<id>`, `producers/publish.py`) are not used here: audit
ids are derived, never handed to a caller who would ask the API for a `pending` status.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.queues import AUDIT_QUEUED_KEY, BULK_QUEUE, MODERATE_BATCH_TASK, PRIORITY_SEP, PRIORITY_STEPS

ID_BYTES = 16
"""Audit ids are 32 hex digits (`producers.ids`): kept as their 16 bytes in the record."""


@dataclass(frozen=True)
class Item:
    id: str
    reference: str
    metadata: dict[str, Any]


FLUSH_BATCHES = 16
"""Batches written per round trip: record and message of each in one MULTI, so neither exists without the other."""
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass
class AuditQueue:
    redis: redis.Redis[bytes]
    name: str
    queue: str = BULK_QUEUE
    _pending: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    """(field, packed ids, message) not written yet: `flush` writes them."""

    @property
    def key(self) -> str:
        return AUDIT_QUEUED_KEY + self.name

    def queued(self) -> set[str]:
        """Every id of the batches recorded as queued or running."""
        return {i for packed in self.redis.hvals(self.key) for i in _unpack(packed)}

    def publish(self, shared: dict[str, Any], items: list[Item]) -> None:
        """Queue one compact batch message of `items` (all of them new); written with the next `flush`."""
        if not items:
            return
        record = items[0].id[:16]
        prefix = _common_prefix([i.reference for i in items])
        message = {"shared": shared, "prefix": prefix, "queued": [self.key, record],
                   "items": [_compact(i, len(prefix)) for i in items]}
        self._pending.append((record, b"".join(bytes.fromhex(i.id) for i in items), self._envelope(message)))
        if len(self._pending) >= FLUSH_BATCHES:
            self.flush()

    def flush(self) -> None:
        """Write every pending batch, each record with its message, in one transaction (one round trip)."""
        if not self._pending:
            return
        pipe = self.redis.pipeline(transaction=True)
        for record, packed, message in self._pending:
            pipe.hset(self.key, record, packed)
            pipe.lpush(self.queue, message)
        pipe.execute()
        self._pending.clear()

    def _envelope(self, message: dict[str, Any]) -> bytes:
        """The message as Celery's Python client would push it (docs/wire-contract.md), built without kombu."""
        task_id = str(uuid.uuid4())
        body = base64.b64encode(_json([[message], {}, _EMBED])).decode()
        headers = {"lang": "py", "task": MODERATE_BATCH_TASK, "id": task_id, "root_id": task_id, "parent_id": None,
                   "group": None, "retries": 0, "eta": None, "expires": None, "timelimit": [None, None],
                   "argsrepr": "", "kwargsrepr": "", "origin": f"llavaguard-audit@{socket.gethostname()}"}
        properties = {"correlation_id": task_id, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                      "delivery_info": {"exchange": "", "routing_key": self.queue}, "delivery_tag": str(uuid.uuid4())}
        return _json({"body": body, "content-encoding": "utf-8", "content-type": "application/json",
                      "headers": headers, "properties": properties})

    def forget(self, ids: Iterable[str]) -> None:
        """Drop the records of batches holding any of `ids` (their messages are lost), so they can be published."""
        lost = set(ids)
        stale = [name for name, packed in self.redis.hgetall(self.key).items() if lost & set(_unpack(packed))]
        if stale:
            self.redis.hdel(self.key, *stale)

    def prune(self, judged: set[str]) -> None:
        """Drop records whose every id is `judged` (a worker stopped between storing and clearing)."""
        done = [name for name, packed in self.redis.hgetall(self.key).items() if set(_unpack(packed)) <= judged]
        if done:
            self.redis.hdel(self.key, *done)

    def waiting_messages(self) -> int:
        """Messages waiting in the queue's lists (every priority step), whoever published them (ours flushed)."""
        self.flush()
        pipe = self.redis.pipeline(transaction=False)
        for step in PRIORITY_STEPS:
            pipe.llen(f"{self.queue}{PRIORITY_SEP}{step}" if step else self.queue)
        return sum(int(n) for n in pipe.execute())


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _unpack(packed: bytes) -> list[str]:
    return [packed[n:n + ID_BYTES].hex() for n in range(0, len(packed), ID_BYTES)]


def _compact(item: Item, cut: int) -> list[Any]:
    return [item.id, item.reference[cut:], item.metadata] if item.metadata else [item.id, item.reference[cut:]]


def _common_prefix(references: list[str]) -> str:
    """The longest prefix every reference shares, ending at a `/` (folder or bucket prefix)."""
    prefix = os.path.commonprefix(references)  # noqa: RUF071 (character-wise on purpose: URIs, not paths)
    return prefix[:prefix.rfind("/") + 1]
