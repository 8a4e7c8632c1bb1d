"""The poller: every few seconds, claim due deliveries from the outbox and dispatch each one.

Workers dispatch to their own sending threads (`worker.notify.tasks.dispatch_here`, issue 15: a Celery task
per delivery cost more worker CPU than the send itself), claiming no more than those threads have room
for (`capacity`), so deliveries spread over every worker's poller and wait in Redis, not in memory.

It runs as a thread in every `llavaguard worker` (started when the worker is ready), so there is no extra
process to deploy and no single point of failure: claims are atomic, so any number of pollers never
dispatch one attempt twice. Tasks are published with no countdown: the waiting happens in the outbox's
sorted set, never in a Celery message the Redis transport could redeliver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from worker.notify.outbox import Outbox

log = structlog.get_logger(__name__)

CLAIM_BATCH = 100
MAX_BATCHES_PER_POLL = 20
TRIM_EVERY_S = 300.0

Dispatch = Callable[[str, int], None]
"""Start (or publish the task for) the attempt (delivery id, attempt)."""


class Poller:
    def __init__(
        self, outbox: Outbox, dispatch: Dispatch, *, interval_s: float, lease_s: float,
        clock: Callable[[], float] = time.time, capacity: Callable[[], int] | None = None,
    ) -> None:
        self.outbox = outbox
        self.capacity = capacity
        """How many attempts `dispatch` can take now (None: unbounded, e.g. a task queue)."""
        self.dispatch = dispatch
        self.interval_s = interval_s
        self.lease_s = lease_s
        """How long a dispatched task may wait in the queue before its delivery is claimed again."""
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llavaguard-webhook-poller", daemon=True)
        self._last_trim = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def poll_once(self) -> int:
        """Claim and dispatch everything due now; the number dispatched."""
        dispatched = 0
        for _ in range(MAX_BATCHES_PER_POLL):
            limit = CLAIM_BATCH if self.capacity is None else min(CLAIM_BATCH, self.capacity())
            if limit <= 0:
                break
            now = self.clock()
            claimed = self.outbox.claim(now=now, lease_until=now + self.lease_s, limit=limit)
            for delivery_id, attempt in claimed:
                self._dispatch(delivery_id, attempt)
            dispatched += len(claimed)
            if len(claimed) < limit:
                break
        self._maybe_trim()
        return dispatched

    def _dispatch(self, delivery_id: str, attempt: int) -> None:
        try:
            self.dispatch(delivery_id, attempt)
        except Exception as exc:  # noqa: BLE001 - broker hiccup: give the claim back, else its lease expires
            log.warning("webhook.dispatch_failed", delivery_id=delivery_id, error=str(exc))
            self.outbox.release(delivery_id, attempt, due_at=self.clock() + self.interval_s)

    def _maybe_trim(self) -> None:
        now = self.clock()
        if now - self._last_trim >= TRIM_EVERY_S:
            self._last_trim = now
            self.outbox.trim(now=now)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - Redis down: keep polling, nothing is lost meanwhile
                log.warning("webhook.poll_failed", error=str(exc))
