"""Tell synchronous waiters that a verdict is stored: `PUBLISH llavaguard:verdicts:<id> <status>`.

A caller of `POST /v1/moderations?wait=` or `moderate()` subscribes to its id's channel, then reads the store,
then waits for this message (`producers/verdict_waits.py`): it is woken the moment the verdict is stored,
never by polling. The hook runs after the store write, so a woken waiter always finds the verdict. Publishing
to a channel nobody listens on costs Redis almost nothing; a failed publish is logged and never fails the
moderation (the waiter's final store read, or its deadline, still answers).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import structlog

from worker.models import ModerationRequest, Verdict
from worker.queues import VERDICTS_CHANNEL

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class VerdictEvents:
    """A `VerdictHook` (worker/pipeline.py), built by the composition root."""

    redis: redis.Redis[bytes]

    def __call__(self, request: ModerationRequest, verdict: Verdict, first: bool) -> None:
        try:
            self.redis.publish(VERDICTS_CHANNEL + verdict.id, verdict.status)
        except redis.RedisError as exc:
            log.warning("moderation.verdict_event_failed", error=str(exc))
