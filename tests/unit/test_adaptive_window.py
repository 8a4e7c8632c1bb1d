"""The adaptive window against a simulated GPU server: deterministic, on a virtual clock, no sleeps.

The simulated server is the stand-in's capacity model (worker/standin/capacity.py) as discrete events:
`capacity` requests run at once for `service_s` each (optionally longer as the batch grows), the rest wait
in FIFO order, and beyond `max_queued` waiting it refuses with 503 at once. Clients have unlimited demand:
each limiter is kept full, as a worker with a backlog keeps it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from worker.inference.adaptive_window import AdaptiveWindow, ChangeReport, FixedWindow, Ticket


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SimServer:
    capacity: int
    service_s: float
    max_queued: int | None = None
    slowdown_per_running: float = 0.0
    """Extra service time per running request, as a real batch gets slower when it grows."""
    running: int = 0
    waiting: deque[tuple[int, Ticket]] = field(default_factory=deque)
    completed: int = 0
    rejected: int = 0


@dataclass
class Simulation:
    server: SimServer
    limiters: list[AdaptiveWindow]
    clock: Clock
    events: list[tuple[float, int, int, Ticket, str]] = field(default_factory=list)
    seq: Any = field(default_factory=itertools.count)
    demand: list[int | None] = field(default_factory=list)
    limit_trace: list[tuple[float, list[int]]] = field(default_factory=list)
    done_trace: list[tuple[float, int]] = field(default_factory=list)

    def run(self, until_s: float, *, change_at: tuple[float, Callable[[], None]] | None = None) -> None:
        while self.clock.now < until_s:
            if change_at is not None and self.clock.now >= change_at[0]:
                change_at[1]()
                change_at = None
            self._fill()
            self.limit_trace.append((self.clock.now, [w.limit for w in self.limiters]))
            when, _, who, ticket, outcome = heapq.heappop(self.events)
            self.clock.now = when
            if outcome == "ok":
                self.server.completed += 1
                self.done_trace.append((when, self.server.completed))
                self._finish()
            self.limiters[who].release(ticket, "ok" if outcome == "ok" else "overloaded")

    def _fill(self) -> None:
        """Each limiter sends one request per pass, so processes' requests reach the server interleaved."""
        sent = True
        while sent:
            sent = False
            for who, window in enumerate(self.limiters):
                cap = self.demand[who] if self.demand else None
                if cap is not None and window.in_flight >= cap:
                    continue
                ticket = window.try_acquire()
                if ticket is not None:
                    self._arrive(who, ticket)
                    sent = True

    def _arrive(self, who: int, ticket: Ticket) -> None:
        s = self.server
        if s.running < s.capacity:
            self._start(who, ticket)
        elif s.max_queued is not None and len(s.waiting) >= s.max_queued:
            s.rejected += 1
            self._push(self.clock.now + 0.001, who, ticket, "503")
        else:
            s.waiting.append((who, ticket))

    def _start(self, who: int, ticket: Ticket) -> None:
        s = self.server
        s.running += 1
        self._push(self.clock.now + s.service_s + s.slowdown_per_running * s.running, who, ticket, "ok")

    def _finish(self) -> None:
        s = self.server
        s.running -= 1
        if s.waiting:
            self._start(*s.waiting.popleft())

    def _push(self, when: float, who: int, ticket: Ticket, outcome: str) -> None:
        heapq.heappush(self.events, (when, next(self.seq), who, ticket, outcome))

    def throughput(self, start_s: float, end_s: float) -> float:
        inside = [n for t, n in self.done_trace if start_s <= t <= end_s]
        return (inside[-1] - inside[0]) / (end_s - start_s) if len(inside) > 1 else 0.0

    def limit_sums(self, start_s: float) -> list[int]:
        return [sum(limits) for t, limits in self.limit_trace if t >= start_s]


def simulate(capacity: int, service_s: float, processes: int = 1, *, max_limit: int = 512,
             max_queued: int | None = None, initial: int | None = None, **server: Any) -> Simulation:
    clock = Clock()
    limiters = [AdaptiveWindow(min_limit=4, max_limit=max_limit, initial=initial, clock=clock)
                for _ in range(processes)]
    return Simulation(SimServer(capacity, service_s, max_queued, **server), limiters, clock)


@pytest.mark.parametrize(("capacity", "service_s"), [(8, 0.2), (32, 0.8), (128, 3.2), (512, 12.8)])
def test_one_process_finds_the_capacity_and_keeps_the_server_full(capacity: int, service_s: float) -> None:
    sim = simulate(capacity, service_s)
    end_s = max(80 * service_s, 100.0)  # the first burst (512) drains at the ceiling before rounds resume
    sim.run(until_s=end_s)
    ceiling = capacity / service_s
    assert sim.throughput(20 * service_s, end_s) >= 0.97 * ceiling
    sums = sim.limit_sums(end_s / 2)
    assert 0.9 * capacity <= min(sums) and max(sums) <= 2 * capacity, (capacity, min(sums), max(sums))


def test_the_window_starts_at_its_bound_so_the_first_burst_fills_the_server() -> None:
    sim = simulate(512, 12.8)
    sim.run(until_s=12.8 * 1.01)
    assert sim.server.completed >= 512, "the first round trip already ran a full batch"


def test_four_processes_sharing_one_server_converge_together_without_oscillating() -> None:
    sim = simulate(128, 1.0, processes=4)
    sim.run(until_s=300)
    assert sim.throughput(50, 300) >= 0.97 * 128
    sums = sim.limit_sums(150)
    assert min(sums) >= 0.85 * 128 and max(sums) <= 2 * 128, (min(sums), max(sums))
    assert max(sums) - min(sums) <= 128, "bounded oscillation"


def test_a_process_joining_a_saturated_server_does_not_double_the_queue() -> None:
    clock = Clock()
    first = AdaptiveWindow(min_limit=1, max_limit=512, clock=clock)
    sim = Simulation(SimServer(64, 1.0), [first], clock)
    sim.run(until_s=60)
    sim.limiters.append(AdaptiveWindow(min_limit=1, max_limit=512, clock=clock))
    sim.run(until_s=200)
    assert sim.throughput(100, 200) >= 0.97 * 64
    sums = sim.limit_sums(120)
    assert max(sums) <= 2 * 64, max(sums)


def test_a_bounded_queue_answering_503_is_respected_after_the_first_burst() -> None:
    sim = simulate(32, 0.5, max_queued=8)
    sim.run(until_s=20)
    early, done = sim.server.rejected, sim.server.completed
    sim.run(until_s=120)
    assert sim.throughput(20, 120) >= 0.97 * 64
    rejected = (sim.server.rejected - early) / (sim.server.completed - done)
    assert rejected < 0.06, f"queue-full answers are rare once the window is found: {rejected:.1%}"


def test_a_window_that_was_not_the_limit_does_not_grow() -> None:
    sim = simulate(256, 1.0, initial=8)
    sim.demand = [3]
    sim.run(until_s=50)
    assert sim.limiters[0].limit == 8


def test_errors_that_say_nothing_about_queueing_change_nothing() -> None:
    clock = Clock()
    window = AdaptiveWindow(min_limit=2, max_limit=64, clock=clock)
    for _ in range(200):
        ticket = window.try_acquire()
        assert ticket is not None
        clock.now += 5.0
        window.release(ticket, "ignored")
    assert window.limit == 64 and window.min_rtt is None


def test_the_window_stays_within_its_bounds_and_blocks_when_full() -> None:
    clock = Clock()
    window = AdaptiveWindow(min_limit=2, max_limit=3, clock=clock)
    tickets = [window.try_acquire() for _ in range(4)]
    assert tickets[3] is None and window.in_flight == 3
    for ticket in tickets[:3]:
        assert ticket is not None
        window.release(ticket, "overloaded")
    assert window.limit == 2
    with pytest.raises(ValueError):
        AdaptiveWindow(min_limit=5, max_limit=4)


def test_slot_blocks_threads_beyond_the_window() -> None:
    window = AdaptiveWindow(min_limit=2, max_limit=2)
    entered = threading.Semaphore(0)
    release = threading.Event()
    peak = [0]

    def work() -> None:
        with window.slot() as slot:
            peak[0] = max(peak[0], window.in_flight)
            entered.release()
            release.wait(5)
            slot.succeeded()

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
    assert not entered.acquire(timeout=0.05) and window.in_flight == 2
    release.set()
    for t in threads:
        t.join(5)
    assert peak[0] == 2 and window.in_flight == 0


def test_fixed_window_holds_exactly_its_limit() -> None:
    window = FixedWindow(3)
    with window.slot(), window.slot(), window.slot():
        assert window.limit == 3


def test_change_report_sets_the_gauge_always_and_logs_at_most_once_per_interval() -> None:
    clock = Clock()
    gauge: list[int] = []
    lines: list[dict[str, Any]] = []
    report = ChangeReport(gauge.append, lambda event, **kw: lines.append({"event": event, **kw}),
                          every_s=10, clock=clock)
    report(512, 40, "queueing")
    for n in range(41, 50):
        clock.now += 1
        report(n - 1, n, "probe")
    clock.now += 5
    report(49, 30, "queue_full")
    assert gauge == [40, *range(41, 50), 30]
    assert lines == [
        {"event": "inference.window_changed", "old": 512, "new": 40, "reason": "queueing", "changes": 1},
        {"event": "inference.window_changed", "old": 40, "new": 30, "reason": "queue_full", "changes": 10},
    ]


def test_the_simulation_is_fast() -> None:
    started = time.perf_counter()
    simulate(128, 1.0, processes=4).run(until_s=100)
    assert time.perf_counter() - started < 5
