"""How much of a worker process one image host may hold: a few concurrent fetches, and none while it is slow.

A moderation holds a worker thread while its image is fetched, and the threads are the in-flight window.
A hostile server that answers slowly (slowloris) would hold every thread it is handed; so each host name
gets at most `max_per_host` concurrent fetches per process (all threads share one `HostGate`). A fetch
that finds its host full waits `wait_s` at most, then raises `FetchHostBusy`, and the task is deferred by a
countdown, which holds no thread. A host whose last `SLOW_STRIKES` fetches all timed out is "slow" for
`cooloff_s`: its images fail `fetch_timeout` at once instead of each costing a thread for a pace window, so
a batch of a thousand slowloris URLs ends in seconds. One fetch from the host that succeeds clears it.

The gate keys on the host name of the URL as given (not its port, not its address): ports cost an attacker
nothing, and the name is known before any DNS query. It never blocks longer than `wait_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from worker.errors import ErrorCode, FetchHostBusy, ModerationFailed

SLOW_STRIKES = 3
"""Timed-out fetches in a row after which a host is treated as slow."""


@dataclass
class _Host:
    active: int = 0
    strikes: int = 0
    slow_until: float = 0.0


class HostGate:
    """Per-host fetch slots and slow-host memory for one worker process; thread-safe."""

    def __init__(self, *, max_per_host: int, wait_s: float, cooloff_s: float) -> None:
        self.max_per_host = max_per_host
        self.wait_s = wait_s
        self.cooloff_s = cooloff_s
        self._hosts: dict[str, _Host] = {}
        self._changed = threading.Condition()

    @contextmanager
    def admit(self, host: str) -> Iterator[None]:
        """Hold one of `host`'s slots for the block; FetchHostBusy or FETCH_TIMEOUT (slow host) instead."""
        key = host.lower().rstrip(".")
        self._acquire(key)
        outcome = "failed"
        try:
            yield
            outcome = "ok"
        except ModerationFailed as exc:
            outcome = "timed_out" if exc.code == ErrorCode.FETCH_TIMEOUT else "failed"
            raise
        finally:
            self._release(key, outcome)

    def active(self, host: str) -> int:
        with self._changed:
            entry = self._hosts.get(host.lower().rstrip("."))
            return entry.active if entry else 0

    def _acquire(self, key: str) -> None:
        give_up_at = time.monotonic() + self.wait_s
        with self._changed:
            while True:
                entry = self._hosts.setdefault(key, _Host())  # again after each wait: a quiet host is dropped
                self._refuse_if_slow(key, entry)
                if entry.active < self.max_per_host:
                    entry.active += 1
                    return
                left = give_up_at - time.monotonic()
                if left <= 0:
                    raise FetchHostBusy(f"{key} already has {entry.active} image fetches running on this worker")
                self._changed.wait(left)

    def _refuse_if_slow(self, key: str, entry: _Host) -> None:
        left = entry.slow_until - time.monotonic()
        if left > 0:
            message = (f"{key} timed out {SLOW_STRIKES} fetches in a row; its images are not fetched "
                       f"for another {left:.0f}s")
            raise ModerationFailed(ErrorCode.FETCH_TIMEOUT, message)

    def _release(self, key: str, outcome: str) -> None:
        """One fetch ended: a timeout is a strike, a success clears them, other failures (404 ...) neither."""
        with self._changed:
            entry = self._hosts[key]
            entry.active -= 1
            if outcome == "timed_out":
                entry.strikes += 1
            elif outcome == "ok":
                entry.strikes = 0
            if entry.strikes >= SLOW_STRIKES and self.cooloff_s > 0:
                entry.slow_until = time.monotonic() + self.cooloff_s
            if entry.active == 0 and entry.strikes == 0 and entry.slow_until <= time.monotonic():
                del self._hosts[key]  # forget quiet, healthy hosts: the table stays small
            self._changed.notify_all()
