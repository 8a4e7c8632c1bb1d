"""Celery tasks: thin wrappers that decode the message, call the pipeline, and decide about retries.

Every message ends in a stored verdict: an undecodable one is recorded as `request_invalid` when it carries
an id; transient failures retry with backoff and, once retries are exhausted, become a failed verdict.
Only an unreachable store keeps retrying without limit, since there is nowhere to record anything.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from celery import Task

from worker.batch import BatchRunner, Unfinished, retry_after_s
from worker.broker.verdicts import DeadLetters
from worker.celery_app import create_app
from worker.composition import build_moderator
from worker.errors import TransientError
from worker.logs import configure_logging
from worker.pipeline import Moderator
from worker.queues import MODERATE_BATCH_TASK, MODERATE_TASK
from worker.retry import backoff_delay_s
from worker.settings import load_settings

settings = load_settings()
configure_logging(settings.log_level, json=settings.log_json)
app = create_app(settings)
log = structlog.get_logger(__name__)

_moderator: Moderator | None = None
_moderator_lock = threading.Lock()


def moderator() -> Moderator:
    """One pipeline per worker process, shared by its threads (all clients in it are thread-safe)."""
    global _moderator
    with _moderator_lock:
        if _moderator is None:
            _moderator = build_moderator(settings)
        return _moderator


@app.task(name=MODERATE_TASK, bind=True, max_retries=None)
def moderate(self: Task, payload: dict[str, Any]) -> None:
    task_id = self.request.id
    moderation_id = str(payload.get("id", "")) if isinstance(payload, dict) else ""
    # Left bound after return: Celery logs the task's success or retry afterwards, and the worker's
    # task_postrun signal clears it (worker.observability.wiring).
    structlog.contextvars.bind_contextvars(moderation_id=moderation_id, task_id=task_id)
    _moderate(self, payload)


def _moderate(task: Task, payload: dict[str, Any]) -> None:
    try:
        batch_runner().moderate_isolated(payload, attempt=task.request.retries)
    except TransientError as exc:
        _retry(task, exc)


# Poison messages (issue 8, items 1 and 8): dead letters, and request_invalid verdicts for the ids they carry.
dead_letters = DeadLetters(settings, moderator)
dead_letter_item = dead_letters.item
dead_letters.listen()

_batch_runner: BatchRunner | None = None


def batch_runner() -> BatchRunner:
    """One pool of `inflight_window` threads per worker process for the items of every batch message."""
    global _batch_runner
    with _moderator_lock:
        if _batch_runner is None:
            pool = ThreadPoolExecutor(settings.inflight_window, thread_name_prefix="llavaguard-batch")
            _batch_runner = BatchRunner(moderator, pool, settings.max_retries, dead_letter=dead_letter_item)
        return _batch_runner


@app.task(name=MODERATE_BATCH_TASK, bind=True, max_retries=None)
def moderate_batch(self: Task, payloads: list[dict[str, Any]]) -> None:
    """Many requests in one message (bulk audits); a retry carries only the items that did not finish."""
    if not isinstance(payloads, list):
        log.warning("moderation.invalid_batch", error=f"expected a list of requests, got {type(payloads).__name__}")
        return
    unfinished = batch_runner().run(payloads, attempt=self.request.retries, task_id=self.request.id)
    if unfinished:
        _retry_batch(self, unfinished)


def _retry_batch(task: Task, unfinished: list[Unfinished]) -> None:
    delay = backoff_delay_s(
        task.request.retries, base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_max_s,
        retry_after_s=retry_after_s(unfinished),
    )
    error = unfinished[0].error
    log.info("moderation.batch_retry", attempt=task.request.retries + 1, items=len(unfinished),
             delay_s=round(delay, 2), error=error.message)
    raise task.retry(args=[[u.payload for u in unfinished]], countdown=delay, exc=error)


def _retry(task: Task, exc: TransientError) -> None:
    delay = backoff_delay_s(
        task.request.retries, base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_max_s,
        retry_after_s=exc.retry_after_s,
    )
    log.info("moderation.retry", attempt=task.request.retries + 1, delay_s=round(delay, 2), error=exc.message)
    raise task.retry(exc=exc, countdown=delay)


import worker.notify.tasks  # noqa: E402, F401  (registers the webhook task and the poller with `app`)
