"""Celery wiring for webhooks: the poller and sender pool of each worker process, and the delivery task.

A worker that consumes the webhooks queue hands what its poller claims straight to its own `SenderPool`
(`dispatch_here`: no broker message per delivery); one that does not (a GPU host run with `--queues
realtime,bulk`) publishes a `deliver_webhook` task per claim, as before, for the webhook workers to send.

Registered on the worker processes' one Celery `app` (worker/worker_app.py); worker/tasks.py imports this module
so that every worker registers the webhook task. The task only hands the attempt
to this process's `SenderPool` (or puts it back in the schedule when every sending thread is busy) and
returns at once: Celery threads, which moderation needs, never wait on a receiver.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from celery.signals import worker_ready, worker_shutdown

from worker import composition
from worker.notify.delivery import SEND_LEASE_MARGIN_S, SenderPool
from worker.notify.outbox import Outbox
from worker.notify.poller import Poller
from worker.queues import DELIVER_WEBHOOK_TASK, WEBHOOKS_QUEUE
from worker.worker_app import app, settings

log = structlog.get_logger(__name__)
_lock = threading.RLock()
_pool: SenderPool | None = None
_poller: Poller | None = None


def outbox() -> Outbox:
    """The process's one outbox, shared with the verdict hook (worker.composition.outbox)."""
    return composition.outbox(settings)


def sender_pool() -> SenderPool:
    """One pool of `webhook_concurrency` sending threads per worker process."""
    global _pool
    with _lock:
        if _pool is None:
            courier = composition.webhook_courier(settings)
            _pool = SenderPool(courier.attempt, settings.webhook_concurrency, give_back=_give_back)
        return _pool


def _give_back(delivery_id: str, attempt: int) -> None:
    outbox().release(delivery_id, attempt, due_at=time.time())


def busy_delay_s() -> float:
    """When every sending thread is busy, the delivery comes back this much later (rather than wait)."""
    return max(settings.webhook_poll_interval_s, settings.webhook_timeout_s / 4)


def pool_lease_s() -> float:
    """A claimed attempt starts within one webhook timeout (the pool queues at most as many as it runs),
    so a worker that dies holding claims gives them back after a few timeouts, not a visibility timeout."""
    return 4 * settings.webhook_timeout_s + SEND_LEASE_MARGIN_S


@app.task(name=DELIVER_WEBHOOK_TASK)
def deliver_webhook(delivery_id: str, attempt: int) -> None:
    dispatch_here(delivery_id, attempt)


def dispatch(delivery_id: str, attempt: int) -> None:
    deliver_webhook.apply_async(args=[delivery_id, attempt], queue=WEBHOOKS_QUEUE)


def dispatch_here(delivery_id: str, attempt: int) -> None:
    """Start the attempt on this process's sending threads, without a broker message (the claim already
    holds its lease); when every thread is busy it goes back to the schedule a little later."""
    if not sender_pool().try_submit(delivery_id, attempt):
        outbox().release(delivery_id, attempt, due_at=time.time() + busy_delay_s())


@worker_ready.connect
def _start_poller(**_: Any) -> None:
    global _poller
    with _lock:
        if _poller is None:
            if consumes_webhooks():
                pool = sender_pool()
                _poller = composition.webhook_poller(settings, dispatch_here, capacity=pool.free_slots,
                                                     lease_s=pool_lease_s())
            else:  # e.g. a GPU host run with --queues realtime,bulk: the webhooks queue's workers send
                _poller = composition.webhook_poller(settings, dispatch)
            _poller.start()
            log.info("webhook.poller_started", interval_s=settings.webhook_poll_interval_s,
                     endpoints=len(settings.webhook_url), signed=bool(settings.webhook_secret),
                     sends_here=consumes_webhooks())


def consumes_webhooks() -> bool:
    """Whether this worker was started with the webhooks queue: only then does it send what it claims."""
    return WEBHOOKS_QUEUE in app.amqp.queues.consume_from


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    if _poller is not None:
        _poller.stop()
    if _pool is not None:
        _pool.shutdown()
