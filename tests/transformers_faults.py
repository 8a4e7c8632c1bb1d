"""Fault hooks for the in-process backend's contract tests (the tiny model's and a real checkpoint's)."""

from __future__ import annotations

import threading
import time
from typing import Any

from worker.inference.base import Completion, VisionRequest
from worker.inference.transformers_backend import TransformersBackend


class OverloadedBackend:
    """A backend over `model_path` whose one pending slot is taken by a generation held until `release()`.

    The hold stands for a slow GPU: the queue is full the way it fills in production, and the next
    `complete()` is refused as transient.
    """

    def __init__(self, model_path: str, occupying: VisionRequest) -> None:
        self.backend = TransformersBackend(model_path, device="cpu", max_batch=1, max_pending=1)
        self._release = threading.Event()
        loaded = self.backend.loaded()
        original = loaded.generate

        def held(batch: Any) -> list[Completion | BaseException]:
            self._release.wait(60)
            return original(batch)

        loaded.generate = held  # type: ignore[method-assign]
        self._occupant = threading.Thread(target=self.backend.complete, args=(occupying,), daemon=True)
        self._occupant.start()
        deadline = time.monotonic() + 10
        while self.backend._pending < 1 and time.monotonic() < deadline:
            time.sleep(0.01)

    def release(self) -> None:
        self._release.set()
        self._occupant.join(60)
        self.backend.close()
