"""Verdict events: which ones a verdict produces, who receives them, their body, and each delivery's id.

The body is built once, when the delivery is enqueued, and stored with it: every attempt sends the same
bytes under the same `webhook-id`, so receivers can de-duplicate. The id is derived from (moderation id,
event type, target URL), so a redelivered moderation task enqueues nothing new. Nothing here touches Redis
or the network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from worker.models import Verdict
from worker.webhook_format import (  # re-exported: the names belong here, they live in a leaf for settings
    BANK_MATCH as BANK_MATCH,
)
from worker.webhook_format import (
    COMPLETED as COMPLETED,
)
from worker.webhook_format import (
    EVENT_TYPES as EVENT_TYPES,
)
from worker.webhook_format import (
    FAILED as FAILED,
)
from worker.webhook_format import (
    OPTIONAL_EVENTS as OPTIONAL_EVENTS,
)
from worker.webhook_format import (
    REVIEW_REQUESTED as REVIEW_REQUESTED,
)
from worker.webhook_format import (
    REVIEWED as REVIEWED,
)
from worker.webhook_format import (
    UNSAFE as UNSAFE,
)


@dataclass(frozen=True)
class Target:
    """One receiver of events. `trusted` targets come from settings (signed with WEBHOOK_SECRET); request
    callbacks pass the SSRF guard and are signed with their `owner`'s callback secret."""

    url: str
    trusted: bool
    owner: str | None = None


def events_for(verdict: Verdict, enabled: Collection[str]) -> list[str]:
    """The event types `verdict` produces, given the optional events switched on."""
    events = [UNSAFE] if verdict.is_unsafe else []
    if verdict.match is not None and verdict.match.kind == "bank":
        events.append(BANK_MATCH)
    if verdict.status == "completed" and COMPLETED in enabled:
        events.append(COMPLETED)
    if verdict.status == "failed" and FAILED in enabled:
        events.append(FAILED)
    return events


def targets_for(endpoints: Sequence[str], callback_url: str | None, owner: str | None = None) -> list[Target]:
    """The configured endpoints, then the request's callback (once, even if it repeats an endpoint)."""
    targets = [Target(url, trusted=True) for url in dict.fromkeys(endpoints)]
    if callback_url and callback_url not in endpoints:
        targets.append(Target(callback_url, trusted=False, owner=owner))
    return targets


def event_body(event_type: str, verdict: Verdict) -> str:
    """`{"type", "timestamp", "data"}`, compact JSON; the timestamp is when the verdict was reached."""
    data = verdict.model_dump(mode="json")
    event = {"type": event_type, "timestamp": data["completed_at"], "data": data}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def review_event_body(event_type: str, verdict: Verdict) -> str:
    """A review event (issue 11), shaped like `event_body`; the timestamp is when the review was requested
    (`moderation.review_requested`) or the label recorded (`moderation.reviewed`)."""
    data = verdict.model_dump(mode="json")
    review = data.get("review") or {}
    at = review.get("reviewed_at") if event_type == REVIEWED else review.get("requested_at")
    event = {"type": event_type, "timestamp": at or data["completed_at"], "data": data}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def delivery_id(moderation_id: str, event_type: str, url: str) -> str:
    """The `webhook-id` of one event to one target: the same on every attempt and every redelivery."""
    digest = hashlib.sha256(f"{moderation_id}\n{event_type}\n{url}".encode()).hexdigest()
    return f"msg_{digest[:32]}"
