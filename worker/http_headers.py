"""Reading HTTP response headers the worker acts on; shared by the model-server client and the webhook sender.

A leaf: imports nothing from worker, so any HTTP client here (SGLang, OpenAI-compatible, webhooks) can use it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or bad.

    Delta-seconds are digits only (RFC 9110): "-5" or "1.5e3" are unreadable, not zero; a date in the past is 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
