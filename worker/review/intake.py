"""The Moderator step after the decision and before the store: mark a verdict for review, keep its image.

The copy kept is the prepared payload the model saw (never the original URL: a reviewer's browser must not
fetch the producer's image, which may have changed or may track who looks). The verdict stored says
`review.status = pending`; the queue entry itself is written after the store (`ReviewHook`), so the queue
never names a verdict that is not stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis
import structlog

from worker.errors import ReviewUnavailable
from worker.models import ReviewInfo, Verdict
from worker.review.retention import RetainedImages
from worker.review.sampling import SampleRates, review_reason

log = structlog.get_logger(__name__)


class ReviewIntake:
    """A `worker.pipeline.RetainStep`."""

    def __init__(self, images: RetainedImages, rates: SampleRates, clock: Callable[[], float] = time.time) -> None:
        self.images = images
        self.rates = rates
        self.clock = clock

    def __call__(self, verdict: Verdict, payload: bytes, mime: str) -> Verdict:
        reason = review_reason(verdict, self.rates)
        if reason is None:
            return verdict
        try:
            kept = self.images.retain(verdict.id, payload, mime)
        except redis.RedisError as exc:
            raise ReviewUnavailable(f"cannot retain the image for review: {exc}") from exc
        if not kept:
            log.warning("review.image_not_retained", reason="max_retained reached")
        requested = datetime.fromtimestamp(self.clock(), UTC)
        return verdict.model_copy(update={"review": ReviewInfo(status="pending", reason=reason,
                                                               requested_at=requested)})
