"""How many requests one worker process keeps in flight against the model server, found by measuring it.

A GPU server batches whatever is in flight, so the right window is the server's capacity (its running batch)
plus a small queue, shared by every worker process that talks to it; nobody knows that number in advance.
`AdaptiveWindow` finds and holds it with a delay-based AIMD rule (TCP Vegas and Netflix concurrency-limits'
Gradient2 share the idea): while the server has room, a request takes its base time (the smallest round trip
seen, `min_rtt`); once it queues, the round trip grows with the queue while throughput stays flat. Each round
(about half a window of completions) compares the mean round trip with `min_rtt`:

    ratio > tolerance       queueing: cut to the in-flight the server really runs (Little's law:
                            in_flight * min_rtt / rtt) plus `headroom`, by at most a fifth near the knee
    ratio < 1 + growth_gap  room to spare (if the window was actually used): double until the server
                            first queued, then grow by a quarter
    otherwise               near the knee: additive increase (the same small step for every process,
                            at most an eighth of the window) to probe for more
    a 503/429 (queue full)  cut to 80 % of what was in flight, at once

Every process sees the same round trips from the shared server, so N limiters cut together and their sum
stays between about 1 and `tolerance` times the capacity: the server does not run dry and the oscillation
is bounded. A change starts an epoch; answers to requests sent before it are not evidence about the new
window, which keeps one queue from being punished twice. The window starts at its upper bound: the first
burst fills the server at once (a GPU batch of hundreds with a round trip of seconds would take minutes to
reach by doubling), and its first answers, which found the server empty, measure the base round trip.

Known limits: the base time is the smallest round trip ever seen, so a server that becomes slower for good
(longer answers) is read as a queue and the window shrinks towards its floor until the old base is beaten;
a batch whose step time grows with its size is cut where its latency reaches `tolerance`; and N processes
hold the server full together but their shares wander (the constant additive step pulls them together,
slowly); a process started against a saturated server takes a queued round trip for the base one.

This module does no I/O and never sleeps: `try_acquire`/`release` are the whole algorithm (the simulation
in tests/unit/test_adaptive_window.py drives them on a virtual clock); `slot()` is the blocking form the
HTTP client uses. `FixedWindow` is today's fixed semaphore behind the same interface.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

Outcome = Literal["ok", "overloaded", "ignored"]
"""What one request says about the server: a round trip to learn from, a queue-full refusal, or nothing
(a transport error or a refused request: its time says nothing about queueing)."""

Reason = Literal["queueing", "queue_full", "room", "probe"]
ChangeListener = Callable[[int, int, Reason], None]
"""Called with (old, new, reason) after each change, outside the limiter's lock."""


@dataclass(frozen=True)
class Ticket:
    """One admitted request: when it was sent, under which epoch, and how many were in flight with it."""

    started: float
    epoch: int
    in_flight: int


class Slot:
    """The caller's handle on one admitted request; nothing recorded unless it says how the request went."""

    def __init__(self) -> None:
        self.outcome: Outcome = "ignored"

    def succeeded(self) -> None:
        self.outcome = "ok"

    def overloaded(self) -> None:
        self.outcome = "overloaded"


class Window(Protocol):
    """What `ChatCompletionsClient` needs: a blocking slot per request and the current limit."""

    @property
    def limit(self) -> int: ...

    def slot(self) -> AbstractContextManager[Slot]: ...


@dataclass
class _Round:
    samples: list[float] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)


class AdaptiveWindow:
    """The delay-based window of the module docstring; thread-safe, one per worker process."""

    def __init__(
        self,
        *,
        min_limit: int,
        max_limit: int,
        initial: int | None = None,
        tolerance: float = 1.3,
        headroom: float = 0.1,
        growth_gap: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        on_change: ChangeListener | None = None,
    ) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if not 1 + growth_gap < 1 + headroom < tolerance:
            raise ValueError("need growth_gap < headroom < tolerance - 1")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.tolerance = tolerance
        self.headroom = headroom
        self.growth_gap = growth_gap
        self._clock = clock
        self._on_change = on_change
        self._limit = self._clamp(max_limit if initial is None else initial)
        self._cond = threading.Condition()
        self._in_flight = 0
        self._epoch = 0
        self._round = _Round()
        self.min_rtt: float | None = None
        self._step = max(1, min(8, max_limit // 64))
        """The additive probe, the same for every process whatever its share: AIMD's fairness comes from it."""
        self._found = False
        """Whether the server has queued yet: until then the window doubles per round (a slow start)."""

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def try_acquire(self) -> Ticket | None:
        """A ticket when the window has room, else None (the caller waits or tries later)."""
        with self._cond:
            return self._admit_locked()

    def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """Return a ticket and learn from how its request went."""
        now = self._clock()
        with self._cond:
            self._in_flight -= 1
            change = self._learn_locked(ticket, outcome, now)
            self._cond.notify_all() if change else self._cond.notify()
        if change is not None and self._on_change is not None:
            self._on_change(*change)

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """Wait for room, hold it for the body of the `with`; the body marks the slot with its outcome."""
        with self._cond:
            ticket = self._admit_locked()
            while ticket is None:
                self._cond.wait()
                ticket = self._admit_locked()
        handle = Slot()
        try:
            yield handle
        finally:
            self.release(ticket, handle.outcome)

    def _admit_locked(self) -> Ticket | None:
        if self._in_flight >= self._limit:
            return None
        self._in_flight += 1
        return Ticket(self._clock(), self._epoch, self._in_flight)

    def _learn_locked(self, ticket: Ticket, outcome: Outcome, now: float) -> tuple[int, int, Reason] | None:
        if ticket.epoch != self._epoch or outcome == "ignored":
            return None  # sent under another window (or says nothing): no evidence about this one
        if outcome == "overloaded":
            self._found = True
            return self._set_locked(round(0.8 * ticket.in_flight), "queue_full")
        rtt = max(now - ticket.started, 1e-9)
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        self._round.samples.append(rtt)
        self._round.in_flight.append(self._in_flight + 1)  # what was out while this one was
        if len(self._round.samples) < max(4, (self._in_flight + 1) // 2):
            return None
        return self._close_round_locked()

    def _close_round_locked(self) -> tuple[int, int, Reason] | None:
        samples, used = self._round.samples, statistics.fmean(self._round.in_flight)
        rtt = statistics.fmean(samples)
        self._round = _Round()  # a round that changes nothing starts the next one under the same epoch
        assert self.min_rtt is not None
        ratio = rtt / self.min_rtt
        if ratio > self.tolerance:
            return self._queueing_locked(rtt, used)
        if ratio < 1 + self.growth_gap:
            if used * 2 < self._limit:
                return None  # the window was not the limit: growing it proves nothing
            grown = self._limit * 2 if not self._found else self._limit + max(1, self._limit // 4)
            return self._set_locked(grown, "room")
        if used >= 0.8 * self._limit:
            return self._set_locked(self._limit + min(self._step, max(1, self._limit // 8)), "probe")
        return None

    def _queueing_locked(self, rtt: float, used: float) -> tuple[int, int, Reason] | None:
        """Cut to what the server runs (Little's law) plus headroom, by at most a fifth once near it."""
        assert self.min_rtt is not None
        self._found = True
        target = max(used * self.min_rtt / rtt * (1 + self.headroom), 0.8 * used if rtt < 2 * self.min_rtt else 0)
        return self._set_locked(round(target), "queueing")

    def _set_locked(self, target: int, reason: Reason) -> tuple[int, int, Reason] | None:
        old, self._limit = self._limit, self._clamp(target)
        self._epoch += 1
        self._round = _Round()
        return None if self._limit == old else (old, self._limit, reason)

    def _clamp(self, value: int) -> int:
        return max(self.min_limit, min(self.max_limit, value))


class FixedWindow:
    """`LLAVAGUARD_ADAPTIVE_WINDOW=false`: exactly `limit` requests in flight, whatever the server says."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the window must be at least 1")
        self._limit = limit
        self._semaphore = threading.BoundedSemaphore(limit)

    @property
    def limit(self) -> int:
        return self._limit

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        with self._semaphore:
            yield Slot()


class ChangeReport:
    """Turns window changes into a gauge (every change) and log lines (at most one per `every_s`).

    While a limiter searches it may change every round; one line per change would drown the log, so a
    line says the latest change and how many came since the last line (`changes`), and `old` is the window
    the previous line left. The first change is always logged at once.
    """

    def __init__(
        self,
        set_gauge: Callable[[int], None],
        log: Callable[..., None],
        *,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._set_gauge = set_gauge
        self._log = log
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_logged: float | None = None
        self._logged_limit: int | None = None
        self._pending = 0

    def __call__(self, old: int, new: int, reason: Reason) -> None:
        self._set_gauge(new)
        now = self._clock()
        with self._lock:
            if self._logged_limit is None:
                self._logged_limit = old
            self._pending += 1
            if self._last_logged is not None and now - self._last_logged < self._every_s:
                return
            line = {"old": self._logged_limit, "new": new, "reason": reason, "changes": self._pending}
            self._last_logged, self._logged_limit, self._pending = now, new, 0
        self._log("inference.window_changed", **line)

