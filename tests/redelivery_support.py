"""Helpers for the redelivery tests: a stand-in that records which image each model request carried, and a
fleet of real worker processes that a test can SIGKILL and replace.

Each test image is identified by its width (`sized_image(n)` is `64 + n` pixels wide): the worker only
downscales images wider than `MAX_IMAGE_SIDE_PX`, so the width survives normalisation and the stand-in can
tell which moderation a request belongs to without knowing anything else about the worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import WorkerProcess
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn
from worker.standin.verdicts import decode_image
from worker.standin.wire import Job, Output

BASE_WIDTH = 64


def sized_image(n: int, code: str = "O7") -> bytes:
    return make_image(code, size=(BASE_WIDTH + n, 32))


class RecordingStandIn(SGLangStandIn):
    """The stand-in, plus a record of (wall-clock time, image number) for every model request it started."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[float, int]] = []
        self._calls_lock = threading.Lock()
        self.on_request: Callable[[int], None] | None = None

    def _run(self, job: Job) -> Output:
        try:
            number = decode_image(job.image_url).size[0] - BASE_WIDTH
        except Exception:  # an unreadable image: the stand-in's own answer (400) follows
            number = -1
        with self._calls_lock:
            self.calls.append((time.time(), number))
        if self.on_request is not None:
            self.on_request(number)
        return super()._run(job)

    def requests_per_image(self) -> Counter[int]:
        with self._calls_lock:
            return Counter(number for _, number in self.calls)

    def request_times(self, number: int) -> list[float]:
        with self._calls_lock:
            return [at for at, n in self.calls if n == number]


class Fleet:
    """Real `llavaguard worker` processes started on demand; `kill_all` SIGKILLs every living one."""

    def __init__(self, env: dict[str, str], log_dir: Path, **kwargs: Any) -> None:
        self.env, self.log_dir, self.kwargs = env, log_dir, kwargs
        self.workers: list[WorkerProcess] = []
        self._lock = threading.Lock()
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, count: int = 1) -> list[WorkerProcess]:
        with self._lock:
            started = [WorkerProcess(self.env, self.log_dir / f"worker-{len(self.workers) + i}.log", **self.kwargs)
                       for i in range(count)]
            self.workers.extend(started)
        for worker in started:
            worker.wait_ready()
        return started

    def alive(self) -> list[WorkerProcess]:
        with self._lock:
            return [w for w in self.workers if w.proc.poll() is None]

    def kill(self, workers: list[WorkerProcess]) -> None:
        for worker in workers:
            if worker.proc.poll() is None:
                os.kill(worker.proc.pid, signal.SIGKILL)
        for worker in workers:
            worker.proc.wait(10)

    def kill_all(self) -> None:
        self.kill(self.alive())

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
