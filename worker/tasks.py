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
from pydantic import ValidationError

from worker.celery_app import create_app
from worker.composition import build_moderator
from worker.errors import ErrorCode, StoreUnavailable, TransientError
from worker.logs import configure_logging
from worker.models import ImageRef, ModerationRequest
from worker.pipeline import Moderator
from worker.queues import MODERATE_TASK
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
    structlog.contextvars.bind_contextvars(moderation_id=moderation_id, task_id=task_id)
    try:
        _moderate(self, payload)
    finally:
        structlog.contextvars.clear_contextvars()


def _moderate(task: Task, payload: dict[str, Any]) -> None:
    try:
        request = ModerationRequest.model_validate(payload)
    except ValidationError as exc:
        _record_invalid(task, payload, exc)
        return
    try:
        moderator().moderate(request)
    except TransientError as exc:
        attempts = task.request.retries
        if attempts >= settings.max_retries and not isinstance(exc, StoreUnavailable):
            code, message = exc.code, f"gave up after {attempts + 1} attempts: {exc.message}"
            log.warning("moderation.retries_exhausted", error=exc.message)
            _retrying_on_store(task, lambda: moderator().record_failure(request, code, message))
            return
        _retry(task, exc)


def _record_invalid(task: Task, payload: Any, exc: ValidationError) -> None:
    moderation_id = payload.get("id") if isinstance(payload, dict) else None
    log.warning("moderation.invalid_request", error=str(exc).splitlines()[0])
    if not isinstance(moderation_id, str) or not moderation_id:
        return  # nothing to key a verdict on: the message is logged and dropped
    metadata = payload.get("metadata")
    placeholder = ModerationRequest(
        id=moderation_id, image=ImageRef(data=b""), metadata=metadata if isinstance(metadata, dict) else {}
    )
    message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    _retrying_on_store(
        task, lambda: moderator().record_failure(placeholder, ErrorCode.REQUEST_INVALID, message)
    )


def _retrying_on_store(task: Task, action: Any) -> None:
    try:
        action()
    except StoreUnavailable as exc:
        _retry(task, exc)


def _retry(task: Task, exc: TransientError) -> None:
    delay = backoff_delay_s(
        task.request.retries, base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_max_s,
        retry_after_s=exc.retry_after_s,
    )
    log.info("moderation.retry", attempt=task.request.retries + 1, delay_s=round(delay, 2), error=exc.message)
    raise task.retry(exc=exc, countdown=delay)
