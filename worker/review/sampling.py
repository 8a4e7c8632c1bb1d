"""Why a verdict is queued for review: the decision said so, or it fell in the quality sample.

Sampling is a function of the verdict id (its SHA-256 read as a fraction of 2**64), not a random draw, so a
redelivered moderation that runs again decides exactly as the first run did, and a sample is reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from worker.models import Verdict

REVIEW_BAND = "review_band"
QUALITY_SAMPLE = "quality_sample"


@dataclass(frozen=True)
class SampleRates:
    """Shares (0..1) of `allow` and `block` verdicts queued for quality review."""

    allow: float = 0.0
    block: float = 0.0


def fraction(verdict_id: str) -> float:
    """A stable number in [0, 1) for an id, uniform over ids."""
    return int.from_bytes(hashlib.sha256(verdict_id.encode()).digest()[:8], "big") / 2**64


def review_reason(verdict: Verdict, rates: SampleRates) -> str | None:
    """`review_band`, `quality_sample` or None (not queued); only completed verdicts with a decision qualify."""
    if verdict.status != "completed" or verdict.review is not None:
        return None
    if verdict.decision == "review":
        return REVIEW_BAND
    rate = {"allow": rates.allow, "block": rates.block}.get(verdict.decision or "", 0.0)
    return QUALITY_SAMPLE if rate > 0 and fraction(verdict.id) < rate else None
