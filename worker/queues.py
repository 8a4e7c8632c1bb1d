"""Queue and task names shared by producers and workers, and Redis key prefixes (constants, never inline)."""

from __future__ import annotations

REALTIME_QUEUE = "realtime"
BULK_QUEUE = "bulk"
QUEUES = (REALTIME_QUEUE, BULK_QUEUE)
"""Queues moderations are submitted to."""
WEBHOOKS_QUEUE = "webhooks"
"""Webhook delivery tasks (worker/notify): their own queue, so receivers never delay moderation."""
WORKER_QUEUES = (*QUEUES, WEBHOOKS_QUEUE)
"""What `llavaguard worker` consumes by default."""

MODERATE_TASK = "llavaguard.moderate"
MODERATE_BATCH_TASK = "llavaguard.moderate_batch"
"""One message carrying many requests (bulk audits): moderated concurrently inside one task."""
DELIVER_WEBHOOK_TASK = "llavaguard.webhooks.deliver"

KEY_PREFIX = "llavaguard:"
SUBMITTED_KEY = KEY_PREFIX + "submitted:"
"""`llavaguard:submitted:<id>` marks a moderation as enqueued (idempotency and `pending` status)."""
SUBMITTED_TTL_S = 7 * 24 * 3600
DELIVERIES_KEY = KEY_PREFIX + "deliveries:"
"""`llavaguard:deliveries:<task id>:<retry number>` counts redeliveries of one message (worker/redelivery)."""
DELIVERIES_TTL_S = 24 * 3600
# Issue 8 item 5: idempotency scoped per owner, unguessable ids.
SUBMISSION_KEY = KEY_PREFIX + "submission:"
"""`llavaguard:submission:<id>`, beside the marker and with its TTL: owner and request fingerprint (JSON)."""
AUDIT_QUEUED_KEY = KEY_PREFIX + "audit-queued:"
"""`llavaguard:audit-queued:<audit name>`: one hash per audit, a field per batch still queued or running (its
ids, 16 bytes each), instead of a marker key per image (issue 15 item 4; worker/batch_format.py)."""
VERDICTS_CHANNEL = KEY_PREFIX + "verdicts:"
"""`llavaguard:verdicts:<id>`: the worker publishes the verdict's status there once it is stored, waking
synchronous waiters (`?wait=`, `moderate()`) without polling (issue 15 item 5)."""
ID_SECRET_KEY = KEY_PREFIX + "id-secret"
"""The random secret keyed moderation ids are an HMAC with; created once (`SET NX`), shared by all producers."""

# Poison messages (issue 8, item 1): refused by worker/broker before Celery decodes them.
DEADLETTER_KEY = KEY_PREFIX + "deadletter"
"""`llavaguard:deadletter`: JSON entries, newest first (worker/broker/deadletter.py)."""
KNOWN_TASKS = frozenset({MODERATE_TASK, MODERATE_BATCH_TASK, DELIVER_WEBHOOK_TASK})
"""Task names a worker runs; a message naming any other is dead-lettered. Add every new task here."""

PRIORITY_STEPS = [0, 3, 6, 9]
PRIORITY_SEP = ":"
"""Priority lists are `<queue>:<step>` (`realtime:3`), the names producers in any language push to. Only these
names use it: kombu's own records (`_kombu.binding.*`) keep kombu's default separator, which every other Celery
client (Flower, `celery inspect`) assumes (issue 9; worker/broker/transport.py)."""


def priority_list(queue: str, step: int) -> str:
    """The Redis list holding `queue`'s messages of one priority step; step 0 is the bare queue name."""
    return f"{queue}{PRIORITY_SEP}{step}" if step else queue


def redis_priority(priority: int | None) -> int | None:
    """Our scale is 0 (lowest) .. 9 (most urgent); kombu's Redis transport serves 0 first, so invert."""
    return None if priority is None else 9 - priority
