"""The sending threads: bounded, never blocking the caller, and nothing stranded at shutdown."""

from __future__ import annotations

import threading
import time

from worker.notify.delivery import SenderPool


def test_the_pool_runs_then_queues_then_refuses_and_gives_back_waiting_work_at_shutdown() -> None:
    started, gate = threading.Event(), threading.Event()
    ran: list[str] = []
    given_back: list[str] = []

    def run(delivery_id: str, attempt: int) -> None:
        started.set()
        gate.wait(10)
        ran.append(delivery_id)

    pool = SenderPool(run, 1, give_back=lambda delivery_id, attempt: given_back.append(delivery_id))
    assert pool.try_submit("msg_a", 0)
    assert started.wait(5)
    assert pool.try_submit("msg_b", 0)  # waits for the one thread
    assert not pool.try_submit("msg_c", 0)  # full: the caller puts it back in the schedule
    stopping = threading.Thread(target=pool.shutdown)
    stopping.start()
    deadline = time.monotonic() + 5
    while not given_back and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    stopping.join(5)
    assert ran == ["msg_a"] and given_back == ["msg_b"]
    assert not pool.try_submit("msg_d", 0)


def test_a_crashing_attempt_frees_its_thread() -> None:
    done = threading.Event()
    calls: list[str] = []

    def run(delivery_id: str, attempt: int) -> None:
        calls.append(delivery_id)
        if delivery_id == "msg_boom":
            raise RuntimeError("boom")
        done.set()

    pool = SenderPool(run, 1, give_back=lambda delivery_id, attempt: None)
    for n in range(1, 4):  # more crashes than the pool holds (1 running + 1 waiting): each freed its slot
        assert pool.try_submit("msg_boom", 0)
        deadline = time.monotonic() + 5
        while len(calls) < n and time.monotonic() < deadline:
            time.sleep(0.01)
    assert pool.try_submit("msg_ok", 0) and done.wait(5)
    pool.shutdown()
    assert calls == ["msg_boom"] * 3 + ["msg_ok"]
