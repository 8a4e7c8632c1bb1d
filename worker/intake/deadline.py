"""A total time budget shared by every step of one fetch (DNS, each redirect hop, every body read).

Per-operation timeouts alone let a server that drips one byte just inside the read timeout hold a worker
forever; the deadline caps the sum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker.errors import ErrorCode, ModerationFailed


@dataclass(frozen=True)
class Deadline:
    expires_at: float
    """A `time.monotonic()` reading."""
    total_s: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(expires_at=time.monotonic() + seconds, total_s=seconds)

    def remaining_s(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def check(self, doing: str) -> None:
        """Raise FETCH_TIMEOUT once the budget is spent; `doing` says where (it ends up in the verdict)."""
        if self.remaining_s() <= 0:
            message = f"{doing} exceeded the total time limit of {self.total_s}s"
            raise ModerationFailed(ErrorCode.FETCH_TIMEOUT, message)

    def cap(self, seconds: float, doing: str) -> float:
        """`seconds`, shortened to what is left of the budget (raising if nothing is left)."""
        self.check(doing)
        return min(seconds, self.remaining_s())
