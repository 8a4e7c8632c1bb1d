"""The stand-in's capacity model: `max_running` generations at once, a waiting queue, an optional queue bound.

It mirrors SGLang's `--max-running-requests` / `--max-queued-requests` closely enough to measure a client: the
counters show how many requests a worker really kept in flight (peak_running), which is the point of the
stand-in's existence in throughput tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class QueueFull(Exception):
    """More requests are waiting than `max_queued` allows: SGLang answers 503."""


class CapacityGate:
    def __init__(self, max_running: int, max_queued: int | None = None) -> None:
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        if max_queued is not None and max_queued < 0:
            raise ValueError("max_queued must be >= 0 (or None: unbounded)")
        self.max_running = max_running
        self.max_queued = max_queued
        self._cond = threading.Condition()
        self.running = 0
        self.queued = 0
        self.peak_running = 0
        self.rejected = 0
        self.completed = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one running slot for the body of the `with`; QueueFull if the queue is at its bound."""
        self._admit()
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self.completed += 1
                self._cond.notify()

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {
                "running": self.running,
                "queued": self.queued,
                "peak_running": self.peak_running,
                "rejected": self.rejected,
                "completed": self.completed,
                "max_running": self.max_running,
                "max_queued": self.max_queued,
            }

    def _admit(self) -> None:
        with self._cond:
            if self.running >= self.max_running:
                if self.max_queued is not None and self.queued >= self.max_queued:
                    self.rejected += 1
                    raise QueueFull
                self.queued += 1
                try:
                    self._cond.wait_for(lambda: self.running < self.max_running)
                finally:
                    self.queued -= 1
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
