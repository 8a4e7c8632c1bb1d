"""The webhook formats the settings validate at start: event names, the default retry schedule, `whsec_` secrets.

A leaf: worker/settings.py checks `LLAVAGUARD_WEBHOOK_EVENTS` and the secrets with it, and settings import
nothing from the packages they configure; so this module must never import anything from worker. The
notify package re-exports these names where they are used (events, schedule, signing).
"""

from __future__ import annotations

import base64
import binascii

UNSAFE = "moderation.unsafe"
"""Every verdict rated Unsafe; always sent."""
COMPLETED = "moderation.completed"
"""Every completed verdict (Safe or Unsafe); only when listed in LLAVAGUARD_WEBHOOK_EVENTS."""
FAILED = "moderation.failed"
"""Every failed moderation; only when listed in LLAVAGUARD_WEBHOOK_EVENTS."""
BANK_MATCH = "moderation.bank_match"
"""Every verdict an operator's hash bank decided (issue 12), block or allow; always sent. A block match is
rated Unsafe, so it also sends `moderation.unsafe`: receivers acting on that need no change."""
OPTIONAL_EVENTS = (COMPLETED, FAILED)
REVIEW_REQUESTED = "moderation.review_requested"
"""A verdict entered the human review queue (issue 11); sent to the configured endpoints."""
REVIEWED = "moderation.reviewed"
"""A reviewer labelled a verdict: its final decision is the human's; sent to the configured endpoints."""
REVIEW_EVENTS = (REVIEW_REQUESTED, REVIEWED)
EVENT_TYPES = (UNSAFE, BANK_MATCH, *OPTIONAL_EVENTS, *REVIEW_EVENTS)

DEFAULT_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Delays before attempts 2..8: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Standard Webhooks / Svix)."""

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def parse_secret(text: str, position: int = 1) -> bytes:
    """The key bytes of a `whsec_<base64>` secret; ValueError (not quoting it) if it is not of that form."""
    problem = f"secret #{position} is not of the form {SECRET_PREFIX}<base64 of {MIN_SECRET_BYTES}-" \
              f"{MAX_SECRET_BYTES} bytes>"
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(problem)
    encoded = text[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(problem) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(problem)
    return key
