"""When to try a webhook again: what an answer means, the retry schedule with jitter, and Retry-After.

An attempt ends in one of four outcomes: delivered (2xx), gone (410: the endpoint is disabled), refused
(the target can never be sent to: SSRF guard, bad URL, no secret; dead-lettered at once), or retry
(anything else: 3xx (never followed), other 4xx, 5xx, timeouts, connection errors). Retries follow a fixed
schedule (Svix's by default, about 28 hours in all) with jitter, never sooner than a `Retry-After` asks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from worker.http_headers import parse_retry_after as parse_retry_after  # re-exported
from worker.webhook_format import (  # re-exported: the names belong here, they live in a leaf for settings
    DEFAULT_SCHEDULE_S as DEFAULT_SCHEDULE_S,
)

JITTER = 0.2
"""Each delay is drawn from [delay * (1 - JITTER), delay * (1 + JITTER)], so receivers are not stampeded."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"
    REFUSED = "refused"


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    return Outcome.RETRY


@dataclass(frozen=True)
class RetrySchedule:
    delays_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    jitter: float = JITTER

    @classmethod
    def of(cls, delays_s: Sequence[float]) -> RetrySchedule:
        return cls(tuple(delays_s))

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def delay_after(
        self, attempt: int, *, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> float | None:
        """Seconds until the next try after failed attempt number `attempt` (1-based); None: give up.

        A `Retry-After` longer than the scheduled delay wins, capped at the schedule's longest step so
        that a receiver cannot push a delivery out of the schedule altogether.
        """
        if attempt < 1 or attempt > len(self.delays_s):
            return None
        uniform = rng.uniform if rng is not None else random.uniform
        delay: float = self.delays_s[attempt - 1] * uniform(1.0 - self.jitter, 1.0 + self.jitter)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, max(self.delays_s)))
        return delay
