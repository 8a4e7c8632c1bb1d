"""The story of one webhook attempt: take the delivery, send it once, record the attempt, decide what next.

    start (lease) -> disabled endpoint? -> sign + POST -> delivered | 410: disable, dead | refused: dead
                                                       | failure: pending at the next scheduled time, or dead

`SenderPool` runs attempts on a few threads of their own, so a receiver that hangs holds one of those
threads for at most the webhook timeout and never a Celery thread that moderation needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

from worker.notify.outbox import AttemptRecord, Delivery, Outbox
from worker.notify.schedule import Outcome, RetrySchedule
from worker.notify.sender import AttemptResult, WebhookSender
from worker.observability import metrics

log = structlog.get_logger(__name__)

SEND_LEASE_MARGIN_S = 5.0
Attempt = Callable[[str, int], None]
"""Does something with (delivery id, attempt)."""


@dataclass
class Courier:
    """Makes attempts; thread-safe, one per worker process."""

    outbox: Outbox
    sender: WebhookSender
    schedule: RetrySchedule
    clock: Callable[[], float] = time.time

    @property
    def send_lease_s(self) -> float:
        """How long a sending attempt may take before the poller assumes its worker died (twice the timeout)."""
        return 2 * self.sender.timeout_s + SEND_LEASE_MARGIN_S

    def attempt(self, delivery_id: str, attempt: int) -> None:
        now = self.clock()
        delivery = self.outbox.start(delivery_id, attempt, now=now, lease_until=now + self.send_lease_s)
        if delivery is None:
            log.info("webhook.stale_dispatch", delivery_id=delivery_id, attempt=attempt)
            return
        started = self.clock()
        result = self._send(delivery)
        self._record(delivery, result, started)

    def _send(self, delivery: Delivery) -> AttemptResult:
        if self.outbox.is_disabled(delivery.url):
            return AttemptResult(Outcome.REFUSED, None, 0.0, "endpoint disabled (it answered 410 Gone)")
        return self.sender.send(delivery.id, delivery.url, delivery.body.encode(), trusted=delivery.trusted,
                                owner=delivery.owner)

    def _record(self, delivery: Delivery, result: AttemptResult, started: float) -> None:
        state, next_at = self._next(delivery, result)
        record = AttemptRecord(
            number=delivery.attempt_count + 1, at=started, status=result.status, latency_ms=result.latency_ms,
            error=result.error, outcome=result.outcome.value,
        )
        if result.outcome is Outcome.GONE:
            self.outbox.disable(delivery.url, f"HTTP 410 to {delivery.id}", now=started)
        self.outbox.finish(delivery, record, state, next_at=next_at)
        metrics.webhook_attempt(result.outcome.value)
        if state == "dead":
            metrics.webhook_failed("exhausted" if result.outcome is Outcome.RETRY else result.outcome.value)
        log.info(f"webhook.{state}", delivery_id=delivery.id, event_type=delivery.event_type,
                 host=urlsplit(delivery.url).hostname, attempt=record.number, status=result.status,
                 latency_ms=result.latency_ms, error=result.error,
                 next_in_s=None if next_at is None else round(next_at - started, 1))

    def _next(self, delivery: Delivery, result: AttemptResult) -> tuple[str, float | None]:
        if result.outcome is Outcome.DELIVERED:
            return "delivered", None
        if result.outcome is not Outcome.RETRY:
            return "dead", None
        delay = self.schedule.delay_after(delivery.round_attempt, retry_after_s=result.retry_after_s)
        if delay is None:
            return "dead", None
        return "retry", self.clock() + delay


class SenderPool:
    """At most `size` attempts at once in this process, on threads of their own, and `size` more waiting.

    The short wait absorbs bursts; beyond it the caller puts the delivery back in the schedule, so a hung
    receiver makes deliveries wait in Redis, not in this process's memory.
    """

    def __init__(self, run: Attempt, size: int, *, give_back: Attempt) -> None:
        self._run = run
        self._give_back = give_back
        """Called for attempts still waiting at shutdown: they go back to the schedule at once."""
        self.capacity = 2 * size
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="llavaguard-webhook")
        self._waiting: dict[Future[None], tuple[str, int]] = {}
        self._lock = threading.RLock()  # cancel() runs `_forget` in the cancelling thread

    def try_submit(self, delivery_id: str, attempt: int) -> bool:
        """Run (or queue) the attempt; False if the pool is full (the caller reschedules it)."""
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            try:
                future = self._pool.submit(self._guarded, delivery_id, attempt)
            except RuntimeError:  # shutting down
                self._slots.release()
                return False
            self._waiting[future] = (delivery_id, attempt)
            future.add_done_callback(self._forget)
        return True

    def free_slots(self) -> int:
        """How many more attempts `try_submit` would take now (the poller claims no more than this)."""
        with self._lock:
            return self.capacity - len(self._waiting)

    def shutdown(self) -> None:
        """Give waiting attempts back, let running ones finish (each is bounded by the webhook timeout)."""
        with self._lock:
            waiting = [(future, job) for future, job in list(self._waiting.items()) if future.cancel()]
        for _future, (delivery_id, attempt) in waiting:
            self._give_back(delivery_id, attempt)
        self._pool.shutdown(wait=True)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._waiting.pop(future, None)

    def _guarded(self, delivery_id: str, attempt: int) -> None:
        try:
            self._run(delivery_id, attempt)
        except Exception:  # a sending thread must survive; the lease brings the delivery back
            log.exception("webhook.attempt_crashed", delivery_id=delivery_id)
        finally:
            self._slots.release()
