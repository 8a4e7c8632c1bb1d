"""A micro-batcher: concurrent callers each hand in one item, one background thread runs them together.

The in-process model is fastest when one `generate` call covers every request that is in flight: on a GPU a
batch of eight costs little more than one. Celery runs many threads per process, each calling `complete()`
for its own message, so this collects what arrives within a short wait (or until the batch is full), runs
the batch once and hands each caller its own result or its own exception. Items that cannot share a batch
(different sampling settings) are split by `key`. It knows nothing about models, so it is tested without torch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

RunBatch = Callable[[Sequence[Item]], Sequence["Result | BaseException"]]


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    future: Future[Result] = field(default_factory=Future)


class MicroBatcher(Generic[Item, Result]):
    """Runs `run(items)` on batches of at most `max_batch` items gathered for at most `wait_s` seconds.

    `run` returns one result or exception per item, in order; if it raises, every caller of that batch
    gets the exception. The worker thread is a daemon started on the first `submit`.
    """

    def __init__(
        self,
        run: RunBatch[Item, Result],
        *,
        max_batch: int,
        wait_s: float,
        key: Callable[[Item], Hashable] = lambda _item: None,
        name: str = "micro-batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if wait_s < 0:
            raise ValueError("wait_s must not be negative")
        self._run = run
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._key = key
        self._name = name
        self._queue: queue.Queue[_Pending[Item, Result] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, item: Item) -> Result:
        """Block until the batch holding `item` has run; return its result or raise its exception."""
        pending: _Pending[Item, Result] = _Pending(item)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(pending)
        return pending.future.result()

    def close(self) -> None:
        """Stop the worker thread after the batches already queued."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None:
            thread.join(timeout=30)

    def _loop(self) -> None:
        carried: list[_Pending[Item, Result]] = []
        while True:
            first = carried.pop(0) if carried else self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first, carried)
            self._execute(batch)
            if stop:
                for pending in carried:
                    self._execute([pending])
                return

    def _gather(
        self, first: _Pending[Item, Result], carried: list[_Pending[Item, Result]]
    ) -> tuple[list[_Pending[Item, Result]], bool]:
        """Collect items sharing `first`'s key; others wait in `carried` for the next batch."""
        key = self._key(first.item)
        batch = [first]
        still_carried = []
        for pending in carried:
            if len(batch) < self._max_batch and self._key(pending.item) == key:
                batch.append(pending)
            else:
                still_carried.append(pending)
        carried[:] = still_carried
        deadline = time.monotonic() + self._wait_s
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            try:
                pending_or_stop = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if pending_or_stop is None:
                return batch, True
            if self._key(pending_or_stop.item) == key:
                batch.append(pending_or_stop)
            else:
                carried.append(pending_or_stop)
        return batch, False

    def _execute(self, batch: list[_Pending[Item, Result]]) -> None:
        try:
            results = self._run([pending.item for pending in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self._name}: {len(results)} results for {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - every caller of this batch learns why it failed
            for pending in batch:
                pending.future.set_exception(exc)
            return
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
