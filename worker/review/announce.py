"""Review events into the webhook outbox: one delivery per configured endpoint, signed and retried like any.

Review events go to the operator's endpoints (LLAVAGUARD_WEBHOOK_URL) only: they are the trust-and-safety
team's workflow, and a label is recorded by the API, which no longer knows a request's callback URL.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.models import Verdict
from worker.notify.events import Target, delivery_id, review_event_body
from worker.notify.outbox import Outbox


def announce(outbox: Outbox, endpoints: Sequence[str], event_type: str, verdict: Verdict, *, now: float) -> int:
    """Record the event for every endpoint unless already recorded; how many deliveries were new."""
    if not endpoints:
        return 0
    body = review_event_body(event_type, verdict)
    created = 0
    for url in dict.fromkeys(endpoints):
        target = Target(url, trusted=True)
        created += outbox.enqueue(delivery_id(verdict.id, event_type, url), event_type, target, verdict.id, body,
                                  now=now)
    return created
