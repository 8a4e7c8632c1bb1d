"""Many moderations in one task message (bulk audits): run them concurrently, retry only what did not finish.

A `moderate_batch` message carries tens of request payloads, so a million-image audit is thousands of
broker messages, not a million. Items run on one pool per worker process of `inflight_window` threads, the
same window that bounds requests to the model server. Each item ends as a stored verdict (completed or
failed: permanent problems and invalid payloads are recorded like single tasks do) or as a transient
failure; the task then retries with only the transient items, so finished ones are never judged again
(and a redelivered item is harmless anyway: the pipeline returns the verdict already stored).

Nothing here knows about Celery: `worker.tasks` turns the unfinished items into a retry.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from worker.errors import ErrorCode, FetchHostBusy, StoreUnavailable, TransientError
from worker.models import ImageRef, ModerationRequest, scrub_text
from worker.pipeline import Moderator
from worker.validation_errors import describe

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Unfinished:
    """An item whose moderation hit a transient error: it goes into the batch's retry."""

    payload: dict[str, Any]
    error: TransientError


@dataclass
class BatchRunner:
    """Moderates the items of batch messages; one per worker process, shared by its task threads."""

    moderator: Callable[[], Moderator]
    pool: Executor
    max_retries: int
    max_deferrals: int = 0
    """Deferrals for a busy image host (FetchHostBusy) an item may take, counted apart from `max_retries`."""
    dead_letter: Callable[[Any, str], None] = lambda payload, detail: None
    """Keeps an item that cannot be stored under an id of its own (worker/broker/deadletter.py), so that
    nothing is dropped silently."""

    def run(
        self, payloads: list[Any], *, attempt: int, task_id: str | None = None, deferrals: int = 0
    ) -> list[Unfinished]:
        """Moderate every item concurrently; the items that must be retried (empty when all are stored)."""
        futures = [(p, self.pool.submit(self._item, p, attempt, task_id, deferrals)) for p in payloads]
        unfinished: list[Unfinished] = []
        for payload, future in futures:
            try:
                future.result()
            except TransientError as exc:
                unfinished.append(Unfinished(payload, exc))
        return unfinished

    def _item(self, payload: Any, attempt: int, task_id: str | None, deferrals: int) -> None:
        moderation_id = str(payload.get("id", "")) if isinstance(payload, dict) else ""
        structlog.contextvars.bind_contextvars(moderation_id=moderation_id, task_id=task_id)
        try:
            self.moderate_isolated(payload, attempt, deferrals)
        finally:
            structlog.contextvars.clear_contextvars()

    def moderate_isolated(self, payload: Any, attempt: int, deferrals: int = 0) -> None:
        """`moderate_one`, where anything but a transient error ends this item only (failed or dead-lettered)."""
        try:
            self.moderate_one(payload, attempt, deferrals)
        except TransientError:
            raise
        except Exception as exc:
            log.exception("moderation.item_crashed")
            try:
                self.record_or_dead_letter(payload, ErrorCode.INTERNAL_ERROR, f"unexpected {type(exc).__name__}")
            except TransientError:
                raise
            except Exception:  # noqa: BLE001
                self.dead_letter(payload, f"{ErrorCode.INTERNAL_ERROR}: unexpected {type(exc).__name__}")

    def moderate_one(self, payload: Any, attempt: int, deferrals: int = 0) -> None:
        """One request payload to a stored verdict; raises TransientError when it must be retried.

        Shared by single-image tasks and batch items, so both follow the same rules: an invalid payload is
        recorded as `request_invalid`, retries exhausted become a failed verdict, an unreachable store
        always retries (there is nowhere to record anything). `attempt` counts every earlier run, `deferrals`
        those that were deferrals for a busy image host: each kind has its own budget."""
        try:
            request = ModerationRequest.model_validate(payload)
        except ValidationError as exc:
            self._record_invalid(payload, exc)
            return
        try:
            self.moderator().moderate(request)
        except TransientError as exc:
            if self._may_retry(exc, attempt, deferrals):
                raise
            log.warning("moderation.retries_exhausted", error=exc.message)
            message = f"gave up after {attempt + 1} attempts: {exc.message}"
            self.moderator().record_failure(request, exc.code, message)

    def _may_retry(self, exc: TransientError, attempt: int, deferrals: int) -> bool:
        if isinstance(exc, StoreUnavailable):
            return True
        if isinstance(exc, FetchHostBusy):
            return deferrals < self.max_deferrals
        return attempt - deferrals < self.max_retries

    def _record_invalid(self, payload: Any, exc: ValidationError) -> None:
        """Record `request_invalid` under the payload's id; a payload without a usable one is dead-lettered."""
        log.warning("moderation.invalid_request", error=str(exc).splitlines()[0])
        message = describe(exc)
        self.record_or_dead_letter(payload, ErrorCode.REQUEST_INVALID, message)

    def record_or_dead_letter(self, payload: Any, code: ErrorCode, message: str) -> None:
        """A failed verdict under the payload's id, or a dead letter when it has no id a store can keep."""
        placeholder = placeholder_request(payload)
        if placeholder is None:
            self.dead_letter(payload, f"{code}: {message}"[:500])
            return
        self.moderator().record_failure(placeholder, code, message[:2000])


def placeholder_request(payload: Any) -> ModerationRequest | None:
    """A request to file a failed verdict under the payload's id; None when the id is unusable (missing,
    too long, not text): such a verdict could never be stored or found."""
    moderation_id = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(moderation_id, str):
        return None
    metadata = scrub_text(payload.get("metadata"))
    try:
        return ModerationRequest(
            id=moderation_id, image=ImageRef(data=b""), metadata=metadata if isinstance(metadata, dict) else {}
        )
    except ValidationError:
        return None


def all_deferred(unfinished: list[Unfinished]) -> bool:
    """Whether every unfinished item only waits for a busy host: the retry is then a deferral."""
    return all(isinstance(u.error, FetchHostBusy) for u in unfinished)


def retry_after_s(unfinished: list[Unfinished]) -> float | None:
    """The longest `Retry-After` any unfinished item was told, so the retry honours all of them."""
    hints = [u.error.retry_after_s for u in unfinished if u.error.retry_after_s is not None]
    return max(hints) if hints else None
