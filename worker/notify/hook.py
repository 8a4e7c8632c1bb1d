"""The verdict hook: after a verdict is stored, record one delivery per (event, target) in the outbox.

It never sends anything itself (a receiver must not slow moderation) and it is idempotent: delivery ids are
derived from (moderation id, event type, target URL) and created only if absent, so the hook running again
for a redelivered moderation task (`first=False`) records nothing new. If Redis cannot record the delivery
it raises `OutboxUnavailable`, and the moderation task retries rather than drop the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

import structlog

from worker.models import ModerationRequest, Verdict
from worker.notify.events import delivery_id, event_body, events_for, targets_for
from worker.notify.outbox import Outbox

log = structlog.get_logger(__name__)


class WebhookHook:
    """A `worker.pipeline.VerdictHook`."""

    def __init__(
        self, outbox: Outbox, endpoints: Sequence[str], events: Collection[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.endpoints = tuple(endpoints)
        self.events = frozenset(events)
        self.clock = clock

    def __call__(self, request: ModerationRequest, verdict: Verdict, first: bool) -> None:
        targets = targets_for(self.endpoints, request.callback_url, request.owner)
        events = events_for(verdict, self.events) if targets else []
        for event_type in events:
            body = event_body(event_type, verdict)
            for target in targets:
                msg_id = delivery_id(verdict.id, event_type, target.url)
                if self.outbox.enqueue(msg_id, event_type, target, verdict.id, body, now=self.clock()):
                    log.info("webhook.enqueued", delivery_id=msg_id, event_type=event_type, callback=not target.trusted)

