"""The compact `moderate_batch` message of bulk audits, and the record it clears once its items are stored.

A million-image audit must not hold a million full requests in Redis, so an audit batch says once what its
images share and per image only what differs:

    {"shared": {"policy": ..., "non_violating": [...], "audit": "name", "created_at": ...},
     "prefix": "s3://bucket/dataset/",                  # common to every image reference of the batch
     "items": [["<id>", "part0/img1.png"], ["<id>", "part0/img2.png", {"row": 7}], ...],
     "queued": ["llavaguard:audit-queued:<name>", "<field>"]}

`expand` turns it back into ordinary request payloads (validated like any other); a list of payloads (the
older form, and what a retry carries) passes through unchanged. `queued` names the audit's record of this
batch (`producers/bulk/queued.py`): the worker deletes that hash field once every item has a verdict, so the
record only ever holds batches still queued or running. Only fields of keys under `AUDIT_QUEUED_KEY` are ever
deleted: a message cannot make a worker touch any other key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import structlog

from worker.queues import AUDIT_QUEUED_KEY

log = structlog.get_logger(__name__)

Marker = tuple[str, str]
"""(hash key, field) of an audit batch's queued record."""


def expand(message: Any) -> tuple[Any, Marker | None]:
    """(request payloads, queued marker) of a batch message; anything not compact passes through as is."""
    if not isinstance(message, dict) or not isinstance(message.get("items"), list):
        return message, None
    shared, prefix = message.get("shared"), message.get("prefix")
    shared = shared if isinstance(shared, dict) else {}
    prefix = prefix if isinstance(prefix, str) else ""
    return [_payload(shared, prefix, item) for item in message["items"]], marker_of(message.get("queued"))


def marker_of(value: Any) -> Marker | None:
    """A usable marker (two strings, the key under `AUDIT_QUEUED_KEY`), else None."""
    if (isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, str) for v in value)
            and value[0].startswith(AUDIT_QUEUED_KEY)):
        return value[0], value[1]
    return None


def _payload(shared: dict[str, Any], prefix: str, item: Any) -> Any:
    if not isinstance(item, list) or len(item) not in (2, 3) or not isinstance(item[1], str):
        return item  # not an item: the runner records it as request_invalid (or dead-letters it)
    payload = {**shared, "id": item[0], "image": {"url": prefix + item[1]}}
    if len(item) == 3:
        payload["metadata"] = item[2]
    return payload


@dataclass(frozen=True)
class QueuedRecords:
    """Clears an audit batch's queued record; a failure only leaves a record the audit later finds judged."""

    redis: redis.Redis[bytes]

    def done(self, marker: Marker | None) -> None:
        if marker is None:
            return
        try:
            self.redis.hdel(*marker)
        except redis.RedisError as exc:
            log.warning("audit.queued_record_kept", error=str(exc))
