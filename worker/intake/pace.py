"""A minimum pace for an image response, so a slow server holds a worker thread seconds, not the whole budget.

The total deadline (`FETCH_TOTAL_TIMEOUT_S`, 30 s) is a cap, not a share: a server that sends its headers
and then one byte a second stays inside every read timeout and keeps the thread for the full 30 s. The pace
rule aborts earlier: the response headers must arrive within two windows of the request being sent, and
after them every window of `window_s` must bring at least `min_bytes_per_s * window_s` bytes (or the end of
the body). A monitor thread checks at each window's end and, on a miss, trips the request's socket watchdog,
which wakes the blocked read; the fetch then fails `fetch_timeout`. It never touches anything but its own
request's watchdog.
"""

from __future__ import annotations

import threading
import types
from dataclasses import dataclass

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.watchdog import SocketWatchdog

HEADER_WINDOWS = 2
"""The response headers must arrive within this many windows of the request being sent."""


@dataclass(frozen=True)
class Pace:
    """The rule; `min_bytes_per_s` 0 turns it off."""

    min_bytes_per_s: int
    window_s: float

    @property
    def window_bytes(self) -> int:
        return int(self.min_bytes_per_s * self.window_s)


class PaceMonitor:
    """One response's pace: `attach` when the request starts, `body_started`, `received` per chunk; a context
    manager whose exit stops the monitor thread."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._body = threading.Event()
        self._watchdog: SocketWatchdog | None = None
        self._window_bytes = 0
        self._violation: ModerationFailed | None = None
        self._thread = threading.Thread(target=self._watch, name="llavaguard-pace", daemon=True)

    def __enter__(self) -> PaceMonitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self._stop.set()
        self._body.set()  # wakes the monitor if it still waits for the headers

    def attach(self, watchdog: SocketWatchdog) -> None:
        """The request is about to be sent; its watchdog is what a violation trips."""
        with self._lock:
            first = self._watchdog is None
            self._watchdog = watchdog  # a redirect's next hop: a new request, the same pace
        if first and self.pace.min_bytes_per_s > 0:
            self._thread.start()

    def body_started(self) -> None:
        with self._lock:
            self._window_bytes = 0
        self._body.set()

    def received(self, size: int) -> None:
        """Count a body chunk; raise the violation if the monitor already tripped."""
        with self._lock:
            self._window_bytes += size
        self.check()

    def check(self) -> None:
        with self._lock:
            violation = self._violation
        if violation is not None:
            raise violation

    def _watch(self) -> None:
        """Headers within HEADER_WINDOWS windows, then each window (aligned on the body's start) paced."""
        headers_s = self.pace.window_s * HEADER_WINDOWS
        if not self._body.wait(headers_s):
            self._trip(f"no response headers within {headers_s:g}s")
            return
        while not self._stop.wait(self.pace.window_s):
            with self._lock:
                got, self._window_bytes = self._window_bytes, 0
            if got < self.pace.window_bytes:
                self._trip(f"{got} bytes in {self.pace.window_s:g}s, below {self.pace.min_bytes_per_s} bytes/s")
                return

    def _trip(self, why: str) -> None:
        violation = ModerationFailed(ErrorCode.FETCH_TIMEOUT, f"the image server is too slow: {why}")
        with self._lock:
            self._violation = violation
            watchdog = self._watchdog
        if watchdog is not None:
            watchdog.trip(violation)

