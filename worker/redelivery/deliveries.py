"""Delivery counting: a message whose workers keep dying on it ends `worker_lost`, it does not crash-loop the fleet.

A worker killed while it runs a moderation (OOM on a hostile image, a segfault in a decoder) leaves the message
unacknowledged; it is redelivered and may kill the next worker too. So each redelivered message is counted in
Redis (`llavaguard:deliveries:<task id>:<retry number>`, one INCR + EXPIRE round trip per redelivered message;
a first delivery costs nothing since kombu flags restored messages `redelivered`). Celery's `task.retry`
publishes a new message under the same task id with the next retry number, so a deliberate retry starts a
new count and is never taken for a redelivery.

- A single-image message delivered more than `LLAVAGUARD_MAX_DELIVERIES` times records a `worker_lost` failed
  verdict (unless it has a verdict already) and is acknowledged without touching the image.
- Redelivered messages run one at a time per worker process (the quarantine), and are counted only once
  admitted: under the threads pool one crashing image kills every moderation its process holds, and without
  the quarantine its innocent neighbours, redelivered together with it, would die with it again and again
  and end `worker_lost` too. Messages on their first delivery are never held back.
- A batch message is split on its first redelivery into single-image messages (each counted on its own), so
  one crash-inducing image ends `worker_lost` while its siblings get ordinary verdicts.

This module must never run an image and never raise for a Redis hiccup: counting fails open (the message
runs as if first delivered), because losing the count is better than losing the moderation.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from pydantic import ValidationError

from worker.errors import ErrorCode
from worker.models import ImageRef, ModerationRequest
from worker.pipeline import Moderator
from worker.queues import DELIVERIES_KEY

log = structlog.get_logger(__name__)
SPLIT_NAMESPACE = uuid.UUID("5d0b7f5e-2c55-4a43-9a55-4b9b1f0e6a31")
"""Task ids of split items derive from the batch's, so a batch split twice yields the same ids (one count)."""


@dataclass(frozen=True)
class Delivery:
    """Which message this is and how it arrived (from Celery's request)."""

    task_id: str
    retries: int
    redelivered: bool

    @classmethod
    def of(cls, request: Any) -> Delivery:
        info = getattr(request, "delivery_info", None) or {}
        return cls(str(request.id), int(request.retries or 0), bool(info.get("redelivered")))


@dataclass
class DeliveryCounter:
    client: redis.Redis[bytes]
    ttl_s: int

    def count(self, delivery: Delivery) -> int:
        """This message's delivery number (1 = first); one round trip, and none for a first delivery."""
        if not delivery.redelivered:
            return 1
        key = f"{DELIVERIES_KEY}{delivery.task_id}:{delivery.retries}"
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(key).expire(key, self.ttl_s)
            redeliveries, _ = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("delivery.count_failed", error=str(exc))
            return 1
        return 1 + int(redeliveries)


@dataclass
class DeliveryGuard:
    """Decides, before a task runs, whether its message was redelivered once too often."""

    counter: DeliveryCounter
    moderator: Callable[[], Moderator]
    max_deliveries: int
    _quarantine: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def admitted(self, delivery: Delivery, payload: Any) -> Iterator[bool]:
        """Run the message inside this block when it yields True; False: `worker_lost` was recorded instead.

        A redelivered message waits here for the other redelivered messages of this process (see the module
        docstring); while it waits it is held, so its lease is renewed, and it is not counted yet."""
        if not delivery.redelivered:
            yield True
            return
        with self._quarantine:
            yield not self.lost(delivery, payload)

    def lost(self, delivery: Delivery, payload: Any) -> bool:
        """True when the message must not run: a `worker_lost` verdict was recorded instead."""
        number = self.counter.count(delivery)
        if number <= self.max_deliveries:
            if number > 1:
                log.info("delivery.redelivered", delivery=number, max_deliveries=self.max_deliveries)
            return False
        log.warning("delivery.worker_lost", delivery=number, max_deliveries=self.max_deliveries)
        self.record_lost(payload, number)
        return True

    def must_split(self, delivery: Delivery) -> bool:
        """A batch is split on any redelivery: its workers died on one of its items, or for no reason of its own."""
        return self.counter.count(delivery) > 1

    def record_lost(self, payload: Any, number: int) -> None:
        request = _request_or_placeholder(payload)
        if request is None:
            return  # no id: nothing to record a verdict under
        message = (f"delivered {number} times and every worker holding it died (at most "
                   f"{self.max_deliveries} deliveries); the image was not tried again")
        if self.moderator().store.get(request.id) is None:
            self.moderator().record_failure(request, ErrorCode.WORKER_LOST, message)


def _request_or_placeholder(payload: Any) -> ModerationRequest | None:
    try:
        return ModerationRequest.model_validate(payload)
    except ValidationError:
        pass
    moderation_id = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(moderation_id, str) or not moderation_id:
        return None
    metadata = payload.get("metadata")
    try:
        return ModerationRequest(
            id=moderation_id, image=ImageRef(data=b""), metadata=metadata if isinstance(metadata, dict) else {}
        )
    except ValidationError:
        return None


def split_task_ids(batch_task_id: str, retries: int, payloads: Sequence[Any]) -> list[str]:
    """Stable task ids for the single-image messages a batch is split into."""
    return [str(uuid.uuid5(SPLIT_NAMESPACE, f"{batch_task_id}:{retries}:{n}")) for n in range(len(payloads))]


def split_batch(payloads: Sequence[Any], delivery: Delivery, publish: Callable[[Any, str], None]) -> None:
    """Republish each item of a redelivered batch as its own single-image message."""
    for payload, task_id in zip(payloads, split_task_ids(delivery.task_id, delivery.retries, payloads), strict=True):
        publish(payload, task_id)
    log.warning("delivery.batch_split", items=len(payloads))
