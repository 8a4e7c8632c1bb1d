"""Webhooks: signed (Standard Webhooks), retried, durable notifications of verdicts.

    verdict stored ─▶ WebhookHook ─▶ Outbox (Redis: record + `due` sorted set)      [moderation thread]
    Poller (thread in every worker) ─ claim due, lease ─▶ task on queue "webhooks"   [no countdown]
    deliver task ─▶ SenderPool (own threads) ─▶ Courier: sign, POST once, record, reschedule or dead-letter

Why this shape:
- Durable schedule in Redis, not Celery countdowns: a countdown longer than the Redis visibility timeout is
  redelivered and runs twice; a score in a sorted set is never redelivered, so retries can span a day.
- Leases instead of trusting one process: a SIGKILLed worker's claimed deliveries come back when their
  lease expires; every transition checks the attempt number, so a stale task never applies twice. Delivery
  is at least once, always under the same `webhook-id`, which receivers de-duplicate on.
- Its own queue and its own threads: the hook only writes to Redis, and the task hands each attempt to a
  bounded pool, so a slow or dead receiver costs webhook threads, never moderation throughput.
- The poller is a thread in each worker instead of Celery beat: nothing extra to deploy or keep single;
  claims are atomic, so running one per worker is safe.

Modules: events (what is sent, to whom, under which id), signing, schedule (outcomes, retries, Retry-After),
outbox + outbox_scripts (Redis state), sender (one HTTP attempt, SSRF-guarded for callbacks), delivery
(one attempt's story, the sending threads), poller, hook, tasks (Celery wiring).

This package must never log a secret or a request body, nor follow a redirect.
"""
