"""What happens to the moderations inside a dead letter: each id found gets a `request_invalid` verdict.

A refused message whose body is still readable (an unknown task, a bad envelope around good JSON) may carry
moderation requests; their producers wait on those ids, so each one is given a failed verdict instead of
staying `pending` forever. Batch items that cannot be stored under an id of their own are dead-lettered here
too (reason `item_invalid`, or `missing_id` for a request without any `id`), so nothing is dropped silently.
Runs in the consumer: it must never raise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from worker.batch import placeholder_request
from worker.batch_format import expand
from worker.broker import transport
from worker.broker.deadletter import DeadLetterList
from worker.broker.guard import Rejection
from worker.errors import ErrorCode
from worker.observability import metrics
from worker.pipeline import Moderator

log = structlog.get_logger(__name__)


def carried_requests(body: list[Any] | None) -> Iterator[Any]:
    """Request-like payloads in a Celery body's args: a payload, or a list of them (a batch)."""
    args = body[0] if body else []
    for arg in args:
        arg = expand(arg)[0]  # an audit's compact batch: its requests
        if isinstance(arg, dict):
            yield arg
        elif isinstance(arg, list):
            yield from (item for item in arg if isinstance(item, dict))


@dataclass
class DeadLetters:
    """Built by the composition root: `keep_bytes` is MAX_MESSAGE_BYTES, the list is the process's one."""

    moderator: Callable[[], Moderator]
    dead_letter_list: DeadLetterList
    keep_bytes: int

    def listen(self) -> None:
        transport.on_dead_letter(self.record_verdicts)

    def record_verdicts(self, rejection: Rejection, entry: dict[str, Any]) -> None:
        for payload in carried_requests(rejection.body):
            request = placeholder_request(payload)
            if request is None:
                continue
            message = f"message dead-lettered ({rejection.reason}, {entry['id']}): {rejection.detail}"
            try:
                self.moderator().record_failure(request, ErrorCode.REQUEST_INVALID, message)
            except Exception as exc:  # noqa: BLE001  (the dead letter is kept; replay can retry)
                log.error("broker.dead_letter_verdict_failed", error=type(exc).__name__)

    def item(self, payload: Any, detail: str) -> None:
        """Dead-letter one batch item (or single payload) that has no id a verdict could be stored under."""
        reason = "missing_id" if isinstance(payload, dict) and payload.get("id") is None else "item_invalid"
        raw = json.dumps(payload, default=str).encode("utf-8")
        keep = self.keep_bytes
        entry = transport.new_entry(reason=reason, detail=detail, queue="", raw=raw, keep_bytes=keep)
        try:
            self.dead_letter_list.push(entry)
        except Exception as exc:  # noqa: BLE001  (Redis gone: logged below, the item is lost either way)
            log.error("broker.dead_letter_unstored", reason=reason, error=type(exc).__name__)
        log.warning("broker.dead_letter", dead_letter_id=entry["id"], reason=reason, detail=detail, size=len(raw))
        metrics.dead_lettered(reason)
