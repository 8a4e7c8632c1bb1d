"""Wait for an audit's verdicts, and notice enqueued images whose messages are in no queue.

Polling a million ids at once would hammer the store, so each poll reads a time-boxed slice of the ids still
awaited (`get_many` in chunks), moving round them; `sweep` does one such slice while the audit is paused by
its backlog. An id is *lost* when it is recorded as queued but no message can still produce its verdict: the
audit process was killed between recording and publishing, or the queue itself was lost (a Redis without
persistence restarted, a purge). That is decided from the broker: the `bulk` queue is empty and no `bulk`
message is held unacknowledged by any worker (running, or waiting out a retry countdown), twice in a row; then
no verdict for those ids is on its way, and re-enqueueing them cannot make any image judged twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from producers.client import ModerationClient
from worker.models import Verdict
from worker.queues import BULK_QUEUE, PRIORITY_SEP, PRIORITY_STEPS

UNACKED_KEY = "unacked"
"""kombu's Redis hash of delivered, unacknowledged messages: [message, exchange, routing_key] per tag."""


@dataclass(frozen=True)
class QueueProbe:
    redis: Any
    queue: str = BULK_QUEUE
    separator: str = PRIORITY_SEP

    def idle(self) -> bool:
        """No message of the queue is waiting, being worked on, or held for a retry."""
        keys = [self.queue] + [f"{self.queue}{self.separator}{step}" for step in PRIORITY_STEPS if step]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        pipe.hvals(UNACKED_KEY)
        *lengths, unacked = pipe.execute()
        return not any(lengths) and not any(self._ours(raw) for raw in unacked)

    def _ours(self, raw: bytes) -> bool:
        try:
            entry = json.loads(raw)
        except ValueError:
            return True  # unreadable: assume it is ours, so nothing is declared lost on a guess
        return not isinstance(entry, list) or len(entry) < 3 or entry[2] == self.queue


@dataclass
class Waiter:
    client: ModerationClient
    probe: QueueProbe
    on_verdict: Callable[[Verdict], None]
    poll_s: float = 0.5
    budget_s: float = 1.0
    chunk: int = 500
    _left: set[str] = field(default_factory=set)
    _tracked: int = 0
    """How many of `outstanding` are in `_left` (or judged) already."""
    _cursor: int = 0

    def sweep(self, outstanding: list[str]) -> None:
        """One time-boxed slice of verdict reads over `outstanding` (growing), for progress while enqueueing."""
        self._left.update(outstanding[self._tracked:])
        self._tracked = len(outstanding)
        _, self._cursor = self._sweep(outstanding, self._cursor)

    def wait(self, outstanding: list[str], on_lost: Callable[[set[str]], int]) -> None:
        """Return once every id has a verdict; `on_lost(ids)` re-enqueues lost ids, returning how many."""
        self._left.update(outstanding[self._tracked:])
        self._tracked = len(outstanding)
        order, cursor, idle_polls = [i for i in dict.fromkeys(outstanding) if i in self._left], 0, 0
        while self._left:
            found, cursor = self._sweep(order, cursor)
            if cursor == 0:
                order = [i for i in order if i in self._left]
            idle_polls = 0 if found or not self.probe.idle() else idle_polls + 1
            if idle_polls >= 2:
                self._check(list(self._left))  # the last word: every id, now that nothing is in flight
                if self._left and not on_lost(set(self._left)):
                    return  # lost and not found in the source any more: reported as pending
                idle_polls = 0
            if self._left:
                time.sleep(self.poll_s)

    def _sweep(self, order: list[str], cursor: int) -> tuple[int, int]:
        """Check ids from `cursor` on for at most `budget_s`; (verdicts found, where to continue)."""
        deadline, found = time.monotonic() + self.budget_s, 0
        while cursor < len(order) and time.monotonic() < deadline:
            found += self._check([i for i in order[cursor:cursor + self.chunk] if i in self._left])
            cursor += self.chunk
        return found, 0 if cursor >= len(order) else cursor

    def _check(self, ids: list[str]) -> int:
        found = 0
        for start in range(0, len(ids), self.chunk):
            for verdict in self.client.store.get_many(ids[start:start + self.chunk]).values():
                if verdict.id in self._left:
                    self._left.discard(verdict.id)
                    self.on_verdict(verdict)
                    found += 1
        return found

    @property
    def pending(self) -> int:
        return len(self._left)
