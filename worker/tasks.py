"""Celery tasks: thin wrappers that decode the message, call the pipeline, and decide about retries.

Every message ends in a stored verdict: an undecodable one is recorded as `request_invalid` when it carries
an id; transient failures retry with backoff and, once retries are exhausted, become a failed verdict.
Only an unreachable store keeps retrying without limit, since there is nowhere to record anything.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Reject

from worker import batch_format, composition
from worker.batch import BatchRunner, Unfinished, all_deferred, retry_after_s
from worker.errors import FetchHostBusy, TransientError
from worker.notify import tasks as webhook_tasks  # noqa: F401 - registers the webhook task and the poller with `app`
from worker.pipeline import Moderator
from worker.queues import BULK_QUEUE, MODERATE_BATCH_TASK, MODERATE_TASK
from worker.redelivery.deliveries import Delivery, DeliveryGuard, split_batch
from worker.retry import backoff_delay_s, deferral_delay_s
from worker.worker_app import app as app  # `celery -A worker.tasks` finds the app here
from worker.worker_app import settings as settings

log = structlog.get_logger(__name__)

_moderator: Moderator | None = None
_moderator_lock = threading.Lock()


def moderator() -> Moderator:
    """One pipeline per worker process, shared by its threads (all clients in it are thread-safe)."""
    global _moderator
    with _moderator_lock:
        if _moderator is None:
            _moderator = composition.build_moderator(settings)
        return _moderator


@app.task(name=MODERATE_TASK, bind=True, max_retries=None)
def moderate(self: Task, payload: dict[str, Any], deferrals: int = 0) -> None:
    task_id = self.request.id
    moderation_id = str(payload.get("id", "")) if isinstance(payload, dict) else ""
    # Left bound after return: Celery logs the task's success or retry afterwards, and the worker's
    # task_postrun signal clears it (worker.observability.wiring).
    structlog.contextvars.bind_contextvars(moderation_id=moderation_id, task_id=task_id)
    with delivery_guard().admitted(Delivery.of(self.request), payload) as admitted:
        if admitted:  # else its workers kept dying on it: recorded `worker_lost`, acknowledged without running
            _moderate(self, payload, deferrals)


def _moderate(task: Task, payload: dict[str, Any], deferrals: int) -> None:
    try:
        batch_runner().moderate_isolated(payload, attempt=task.request.retries, deferrals=deferrals)
    except FetchHostBusy as exc:
        _defer(task, exc, deferrals)
    except TransientError as exc:
        _retry(task, exc, attempt=task.request.retries - deferrals)


# Poison messages (issue 8, items 1 and 8): dead letters, and request_invalid verdicts for the ids they carry.
dead_letters = composition.dead_letters(settings, moderator)
dead_letter_item = dead_letters.item
dead_letters.listen()

_batch_runner: BatchRunner | None = None


def batch_runner() -> BatchRunner:
    """One pool of `inflight_window` threads per worker process for the items of every batch message."""
    global _batch_runner
    with _moderator_lock:
        if _batch_runner is None:
            _batch_runner = composition.batch_runner(settings, moderator, dead_letter_item)
        return _batch_runner


@app.task(name=MODERATE_BATCH_TASK, bind=True, max_retries=None)
def moderate_batch(self: Task, payloads: Any, deferrals: int = 0, queued: Any = None) -> None:
    """Many requests in one message (bulk audits); a retry carries only the items that did not finish.

    `payloads` is a list of requests or an audit's compact batch (worker/batch_format.py); `queued` is the
    compact batch's record, carried by its retries, cleared once every item has a verdict."""
    payloads, marker = batch_format.expand(payloads)
    marker = marker or batch_format.marker_of(queued)
    if not isinstance(payloads, list):
        log.warning("moderation.invalid_batch", error=f"expected a list of requests, got {type(payloads).__name__}")
        return
    delivery = Delivery.of(self.request)
    if delivery_guard().must_split(delivery):
        # A worker died holding it: one crashing item must not sink the rest.
        _split(self, payloads, delivery, deferrals)
        return
    unfinished = batch_runner().run(payloads, attempt=self.request.retries, task_id=self.request.id,
                                    deferrals=deferrals)
    if unfinished and all_deferred(unfinished):
        _defer(self, unfinished[0].error, deferrals, args=[[u.payload for u in unfinished]], queued=marker)
    if unfinished:
        _retry_batch(self, unfinished, attempt=self.request.retries - deferrals, queued=marker)
    queued_records().done(marker)


_queued_records: batch_format.QueuedRecords | None = None


def queued_records() -> batch_format.QueuedRecords:
    global _queued_records
    with _moderator_lock:
        if _queued_records is None:
            _queued_records = composition.queued_records(settings)
        return _queued_records


_delivery_guard: DeliveryGuard | None = None


def delivery_guard() -> DeliveryGuard:
    """One redelivery counter per worker process (issue 8: bounded deliveries, `worker_lost`)."""
    global _delivery_guard
    with _moderator_lock:
        if _delivery_guard is None:
            _delivery_guard = composition.build_delivery_guard(settings, moderator)
        return _delivery_guard


def _split(task: Task, payloads: list[dict[str, Any]], delivery: Delivery, deferrals: int) -> None:
    info = task.request.delivery_info or {}
    options = {"queue": info.get("routing_key") or BULK_QUEUE, "priority": info.get("priority"),
               "retries": delivery.retries}
    try:
        with app.producer_or_acquire() as producer:
            split_batch(payloads, delivery, lambda payload, task_id: moderate.apply_async(
                args=[payload], kwargs={"deferrals": deferrals}, task_id=task_id, producer=producer, **options))
    except Exception as exc:  # the broker refused part of it: keep the batch, split it again on redelivery
        raise Reject(str(exc), requeue=True) from exc


def _defer(task: Task, exc: TransientError, deferrals: int, args: list[Any] | None = None,
           queued: batch_format.Marker | None = None) -> None:
    """Try again once the busy host may have a free slot; a deferral counts apart from MAX_RETRIES."""
    delay = deferral_delay_s(deferrals, base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_max_s)
    log.info("moderation.deferred", deferral=deferrals + 1, delay_s=round(delay, 2), error=exc.message)
    kwargs: dict[str, Any] = {"deferrals": deferrals + 1}
    if queued is not None:
        kwargs["queued"] = list(queued)
    raise task.retry(args=args, kwargs=kwargs, countdown=delay, exc=exc)


def _retry_batch(task: Task, unfinished: list[Unfinished], *, attempt: int,
                 queued: batch_format.Marker | None = None) -> None:
    delay = backoff_delay_s(
        attempt, base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_max_s,
        retry_after_s=retry_after_s(unfinished),
    )
    error = unfinished[0].error
    log.info("moderation.batch_retry", attempt=task.request.retries + 1, items=len(unfinished),
             delay_s=round(delay, 2), error=error.message)
    kwargs = {**task.request.kwargs, **({"queued": list(queued)} if queued is not None else {})}
    raise task.retry(args=[[u.payload for u in unfinished]], kwargs=kwargs, countdown=delay, exc=error)


def _retry(task: Task, exc: TransientError, *, attempt: int) -> None:
    delay = backoff_delay_s(
        attempt, base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_max_s,
        retry_after_s=exc.retry_after_s,
    )
    log.info("moderation.retry", attempt=task.request.retries + 1, delay_s=round(delay, 2), error=exc.message)
    raise task.retry(exc=exc, countdown=delay)
