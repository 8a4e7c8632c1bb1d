"""The bounded backlog: an audit keeps at most `LLAVAGUARD_AUDIT_BACKLOG` images queued ahead of the workers.

Enqueueing a whole dataset up front would make Redis memory grow with the dataset (a ten-million-image audit,
gigabytes); the workers judge only so many images a minute anyway. So before each batch the audit checks the
`bulk` queue (its messages times the batch size, an upper bound) and, while it is above the backlog, pauses,
using the time to read verdicts (`on_pause`, the progress bar). Memory then holds a few minutes of work,
whatever the dataset's size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Backlog:
    waiting_messages: Callable[[], int]
    batch_size: int
    limit_images: int
    on_pause: Callable[[], None] = lambda: None
    poll_s: float = 0.2
    paused_s: float = 0.0
    """Total time spent waiting for room (reported by the benchmark)."""

    _credit: int = 0
    """Batches that fit without asking Redis again: the queue only shrinks while this audit is not publishing."""

    def wait_for_room(self) -> None:
        """Return once one more batch keeps the queue within the backlog (at least one batch always fits)."""
        while self._credit <= 0:
            self._credit = max(self.limit_images, self.batch_size) // self.batch_size - self.waiting_messages()
            if self._credit > 0:
                break
            started = time.monotonic()
            self.on_pause()
            time.sleep(max(0.0, self.poll_s - (time.monotonic() - started)))
            self.paused_s += time.monotonic() - started
        self._credit -= 1
