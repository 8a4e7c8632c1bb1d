"""The dead-letter list: messages (or batch items) that could never run, kept for inspection and replay.

Entries are JSON, newest first, in the Redis list `llavaguard:deadletter`, trimmed to a maximum length so
that whoever can write poison to the queue cannot fill Redis through this list. The raw message is kept up to
the message size limit; a truncated one cannot be replayed. Never log raw bytes from here.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from worker.queues import DEADLETTER_KEY


def new_entry(*, reason: str, detail: str, queue: str, raw: bytes, keep_bytes: int) -> dict[str, Any]:
    """A dead letter; `queue` is the Redis list it was popped from (priority sub-queue included)."""
    kept = raw[:keep_bytes]
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex, "reason": reason, "detail": detail[:500], "queue": queue,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "size": len(raw),
        "truncated": len(kept) < len(raw),
    }
    try:
        entry["raw"] = kept.decode("utf-8")
    except UnicodeDecodeError:
        entry["raw_base64"] = base64.b64encode(kept).decode("ascii")
    return entry


def raw_bytes(entry: dict[str, Any]) -> bytes:
    if "raw" in entry:
        return str(entry["raw"]).encode("utf-8", "surrogatepass")
    return base64.b64decode(str(entry.get("raw_base64", "")))


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("raw", "raw_base64")}


@dataclass
class DeadLetterList:
    """The list's operations on a redis-py client."""

    client: Any
    max_entries: int

    def push(self, entry: dict[str, Any]) -> None:
        with self.client.pipeline() as pipe:
            pipe.lpush(DEADLETTER_KEY, json.dumps(entry))
            pipe.ltrim(DEADLETTER_KEY, 0, self.max_entries - 1)
            pipe.execute()

    def entries(self) -> list[dict[str, Any]]:
        """Newest first."""
        return [json.loads(item) for item in self.client.lrange(DEADLETTER_KEY, 0, -1)]

    def find(self, entry_id: str) -> tuple[bytes, dict[str, Any]] | None:
        """The stored item (as Redis holds it, for LREM) and its entry."""
        for item in self.client.lrange(DEADLETTER_KEY, 0, -1):
            entry = json.loads(item)
            if entry.get("id") == entry_id:
                return item, entry
        return None

    def replay(self, entry_id: str) -> dict[str, Any]:
        """Put the raw message back on the list it came from and drop the entry; raises LookupError/ValueError."""
        found = self.find(entry_id)
        if found is None:
            raise LookupError(f"no dead letter {entry_id!r}")
        item, entry = found
        if entry.get("truncated") or not entry.get("queue"):
            raise ValueError("this dead letter was truncated (or is a batch item) and cannot be replayed as is")
        with self.client.pipeline() as pipe:
            pipe.lpush(str(entry["queue"]), raw_bytes(entry))
            pipe.lrem(DEADLETTER_KEY, 1, item)
            pipe.execute()
        return entry

    def purge(self, reason: str | None = None) -> int:
        """Delete every entry (or those of one reason); how many were deleted."""
        if reason is None:
            with self.client.pipeline() as pipe:
                pipe.llen(DEADLETTER_KEY)
                pipe.delete(DEADLETTER_KEY)
                count, _ = pipe.execute()
            return int(count)
        removed = 0
        for item in self.client.lrange(DEADLETTER_KEY, 0, -1):
            if json.loads(item).get("reason") == reason:
                removed += int(self.client.lrem(DEADLETTER_KEY, 1, item))
        return removed
