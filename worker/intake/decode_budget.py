"""The memory one worker process may spend decoding images at once, shared by all its threads.

A byte-weighted semaphore: a decode reserves its estimated bytes and waits while the reservations of other
threads leave too little; several small images decode together, a large one waits its turn. It must never
deadlock or hang: an image larger than the whole budget is refused at once (`image_decompression_bomb`), and
a wait has a deadline after which the moderation is retried later (`DecodeMemoryBusy`, transient).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.errors import DecodeMemoryBusy, ErrorCode, ModerationFailed

GIB = 1024**3
BUDGET_FRACTION = 0.5
"""Of the memory the process may use: the rest holds the interpreter, Celery, HTTP clients, fetched bytes."""
BUDGET_CAP_BYTES = 4 * GIB
"""A larger host does not need more: with the per-image limit at 1 GiB this lets four big decodes run."""
CGROUP_LIMIT_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
_UNLIMITED_BYTES = 1 << 60
"""cgroup v1 reports "no limit" as a huge number (9223372036854771712), v2 as the word "max"."""


class DecodeBudget:
    """Thread-safe; build one per process (composition root) and share it with every Intake."""

    def __init__(self, total_bytes: int, wait_s: float) -> None:
        self.total_bytes = total_bytes
        self.wait_s = wait_s
        self._reserved = 0
        self._changed = threading.Condition()

    @property
    def reserved_bytes(self) -> int:
        with self._changed:
            return self._reserved

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` of the budget for the block; released however the block ends."""
        self._acquire(nbytes)
        try:
            yield
        finally:
            with self._changed:
                self._reserved -= nbytes
                self._changed.notify_all()

    def _acquire(self, nbytes: int) -> None:
        if nbytes > self.total_bytes:
            raise ModerationFailed(
                ErrorCode.IMAGE_DECOMPRESSION_BOMB,
                f"the image is too large to decode: it needs about {nbytes} bytes of memory, more than this "
                f"worker's whole decode budget of {self.total_bytes}",
            )
        deadline = time.monotonic() + self.wait_s
        with self._changed:
            while self._reserved + nbytes > self.total_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DecodeMemoryBusy(
                        f"no decode memory for {nbytes} bytes within {self.wait_s:g} s "
                        f"({self._reserved} of {self.total_bytes} in use)", retry_after_s=self.wait_s,
                    )
                self._changed.wait(remaining)
            self._reserved += nbytes


def default_budget_bytes(limit_files: tuple[Path, ...] = CGROUP_LIMIT_FILES) -> int:
    """Half the memory this process may use (its cgroup's limit, else physical memory), at most 4 GiB."""
    return min(int(available_memory_bytes(limit_files) * BUDGET_FRACTION), BUDGET_CAP_BYTES)


def available_memory_bytes(limit_files: tuple[Path, ...] = CGROUP_LIMIT_FILES) -> int:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limits = [limit for limit in map(_read_limit, limit_files) if limit is not None]
    return min([physical, *limits])


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= _UNLIMITED_BYTES:
        return None  # "max", or v1's "unlimited"
    return int(text)
