"""Backoff for transient failures: exponential, capped, with jitter, honouring Retry-After.

A countdown may be longer than the broker's visibility timeout: the worker holding the retry message renews
its lease until it runs (worker/redelivery/lease.py), so it is never redelivered while that worker lives.
"""

from __future__ import annotations

import random


def backoff_delay_s(
    attempt: int, *, base_s: float, cap_s: float, retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number `attempt` (0-based): in [ceiling/2, ceiling], ceiling = min(cap, base*2^n)."""
    ceiling = min(cap_s, base_s * (2 ** min(attempt, 30)))
    uniform = rng.uniform if rng is not None else random.uniform
    delay: float = ceiling * uniform(0.5, 1.0)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap_s))
    return delay


DEFERRAL_CAP_S = 30.0
"""Longest wait before a moderation deferred for a busy image host tries again (issue 8 item 9)."""


def deferral_delay_s(deferrals: int, *, base_s: float, cap_s: float) -> float:
    """Delay before trying a busy host again: the same backoff, capped lower (the host frees up in seconds)."""
    return backoff_delay_s(deferrals, base_s=base_s, cap_s=min(cap_s, DEFERRAL_CAP_S))
