"""The durable webhook outbox in Redis: a record per delivery, a schedule of due attempts, leases, dead letters.

One delivery (one event to one target) moves through `state`:

    pending ──claim──▶ dispatched ──start──▶ sending ──finish──▶ delivered
       ▲                   │ no free sender     │ ├─────────────▶ dead (refused, 410, schedule exhausted)
       └──── release ──────┘                    │ └─ retry ─▶ pending, scored at its next attempt time
    dead / delivered ──replay──▶ pending        └─ lease expired (sender died) ─▶ claimed again

Why not Celery countdowns: with the Redis broker a countdown longer than the visibility timeout is
redelivered and runs twice. Here the next attempt time is a score in `llavaguard:webhooks:due`; the poller
claims due deliveries and publishes one task each with no countdown. A claim holds a lease
(`llavaguard:webhooks:leased`); when a worker dies its leases expire and the poller claims them again, for
at-least-once delivery under one stable `webhook-id`. The broker already is the durable component (AOF in
docker-compose), so this adds no service. Transitions are Lua scripts (outbox_scripts.py): atomic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from worker.errors import OutboxUnavailable
from worker.notify import outbox_scripts as lua
from worker.notify.events import Target
from worker.queues import KEY_PREFIX

WEBHOOK_KEY = KEY_PREFIX + "webhooks:"
DELIVERY_KEY = WEBHOOK_KEY + "delivery:"
"""Hash per delivery: event, target, body, state, attempt counters, last outcome."""
ATTEMPTS_KEY = WEBHOOK_KEY + "attempts:"
"""List per delivery: one JSON record per attempt (time, status code, latency, error, outcome)."""
DUE_KEY = WEBHOOK_KEY + "due"
"""Sorted set: pending delivery ids scored by next attempt time (unix seconds)."""
LEASED_KEY = WEBHOOK_KEY + "leased"
"""Sorted set: claimed delivery ids scored by lease expiry."""
DEAD_KEY = WEBHOOK_KEY + "dead"
"""Sorted set: dead-lettered delivery ids scored by when they died."""
INDEX_KEY = WEBHOOK_KEY + "index"
"""Sorted set: every delivery id scored by creation (for listing); trimmed after the retention."""
DISABLED_KEY = WEBHOOK_KEY + "disabled"
"""Hash: endpoint URL -> why and when it was disabled (it answered 410 Gone)."""


@dataclass(frozen=True)
class Delivery:
    id: str
    event_type: str
    url: str
    trusted: bool
    moderation_id: str
    body: str
    state: str
    attempt_count: int
    round_start: int
    created_at: float
    next_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    owner: str | None = None
    """Whose callback secret signs a callback (None: the SDK's); operator endpoints (`trusted`) use WEBHOOK_SECRET."""

    @property
    def round_attempt(self) -> int:
        """The 1-based number of the next attempt within the current schedule (replay starts a new one)."""
        return self.attempt_count - self.round_start + 1

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> Delivery:
        def number(name: str) -> float | None:
            return float(fields[name]) if fields.get(name) else None

        status = fields.get("last_status")
        return cls(
            id=fields["id"], event_type=fields["event_type"], url=fields["url"],
            trusted=fields.get("trusted") == "1", moderation_id=fields["moderation_id"], body=fields["body"],
            state=fields["state"], attempt_count=int(fields["attempt_count"]),
            round_start=int(fields.get("round_start") or 0), created_at=float(fields["created_at"]),
            next_attempt_at=number("next_attempt_at"), last_status=int(status) if status else None,
            last_error=fields.get("last_error") or None, last_attempt_at=number("last_attempt_at"),
            owner=fields.get("owner") or None,
        )

    def summary(self) -> dict[str, Any]:
        """Everything but the body (which carries the verdict and its metadata)."""
        return {k: v for k, v in asdict(self).items() if k != "body"}


@dataclass(frozen=True)
class AttemptRecord:
    number: int
    at: float
    status: int | None
    latency_ms: float
    error: str | None
    outcome: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class Outbox:
    """Thread-safe (one Redis connection pool); every method is one round trip or one atomic script."""

    def __init__(self, client: redis.Redis[str], *, retention_s: int) -> None:
        self.redis = client
        self.retention_s = retention_s
        self._scripts = {name: client.register_script(getattr(lua, name)) for name in
                         ("ENQUEUE", "CLAIM", "START", "FINISH", "RELEASE", "REPLAY")}

    @classmethod
    def from_url(cls, url: str, *, retention_s: int) -> Outbox:
        return cls(redis.Redis.from_url(url, decode_responses=True), retention_s=retention_s)

    def close(self) -> None:
        self.redis.close()

    def enqueue(
        self, delivery_id: str, event_type: str, target: Target, moderation_id: str, body: str, *, now: float
    ) -> bool:
        """Create the delivery, due now, unless it exists (NX): True if it was created."""
        fields = {
            "id": delivery_id, "event_type": event_type, "url": target.url, "trusted": "1" if target.trusted else "0",
            "moderation_id": moderation_id, "body": body, "state": "pending", "attempt_count": "0",
            "round_start": "0", "created_at": repr(now), "next_attempt_at": repr(now), "owner": target.owner or "",
        }
        flat = [item for pair in fields.items() for item in pair]
        try:
            created = self._run("ENQUEUE", [DELIVERY_KEY + delivery_id, DUE_KEY, INDEX_KEY],
                                [delivery_id, repr(now), *flat])
        except redis.RedisError as exc:
            raise OutboxUnavailable(f"cannot record webhook delivery: {exc}") from exc
        return bool(created)

    def claim(self, *, now: float, lease_until: float, limit: int) -> list[tuple[str, int]]:
        """(id, attempt) of due deliveries and of expired leases, now `dispatched` until `lease_until`."""
        flat = self._run("CLAIM", [DUE_KEY, LEASED_KEY], [repr(now), repr(lease_until), limit, DELIVERY_KEY])
        return [(str(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def start(self, delivery_id: str, attempt: int, *, now: float, lease_until: float) -> Delivery | None:
        """Take the delivery for attempt number `attempt` (0-based count); None if another task has it."""
        flat = self._run("START", [DELIVERY_KEY + delivery_id, LEASED_KEY],
                         [delivery_id, attempt, repr(now), repr(lease_until)])
        if not flat:
            return None
        return Delivery.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))

    def finish(self, delivery: Delivery, record: AttemptRecord, state: str, *, next_at: float | None) -> bool:
        """Record the attempt and move to `state` (delivered, retry -> pending at `next_at`, dead)."""
        keys = [DELIVERY_KEY + delivery.id, ATTEMPTS_KEY + delivery.id, LEASED_KEY, DUE_KEY, DEAD_KEY]
        args = [delivery.id, delivery.attempt_count, record.to_json(), state, repr(record.at),
                repr(next_at or 0.0), self.retention_s, record.status or "", record.error or ""]
        return bool(self._run("FINISH", keys, args))

    def release(self, delivery_id: str, attempt: int, *, due_at: float) -> bool:
        """Give a dispatched delivery back to the schedule untried (no sender was free)."""
        keys = [DELIVERY_KEY + delivery_id, LEASED_KEY, DUE_KEY]
        return bool(self._run("RELEASE", keys, [delivery_id, attempt, repr(due_at)]))

    def replay(self, delivery_id: str, *, now: float) -> str:
        """Reschedule a dead or delivered delivery now, with a fresh schedule: "replayed", else its state
        ("missing", "pending", "dispatched", "sending": nothing to replay)."""
        keys = [DELIVERY_KEY + delivery_id, ATTEMPTS_KEY + delivery_id, DUE_KEY, DEAD_KEY, INDEX_KEY]
        return str(self._run("REPLAY", keys, [delivery_id, repr(now)]))

    def disable(self, url: str, reason: str, *, now: float) -> None:
        self.redis.hset(DISABLED_KEY, url, json.dumps({"reason": reason, "at": now}))

    def enable(self, url: str) -> bool:
        return bool(self.redis.hdel(DISABLED_KEY, url))

    def is_disabled(self, url: str) -> bool:
        return bool(self.redis.hexists(DISABLED_KEY, url))

    def disabled(self) -> dict[str, dict[str, Any]]:
        return {url: json.loads(info) for url, info in self.redis.hgetall(DISABLED_KEY).items()}

    def get(self, delivery_id: str) -> Delivery | None:
        fields = self.redis.hgetall(DELIVERY_KEY + delivery_id)
        return Delivery.from_hash(fields) if fields else None

    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.redis.lrange(ATTEMPTS_KEY + delivery_id, 0, -1)]

    def recent(self, *, limit: int, failed: bool = False) -> list[Delivery]:
        """Newest first: every delivery, or only the dead-lettered ones."""
        ids = self.redis.zrevrange(DEAD_KEY if failed else INDEX_KEY, 0, max(0, limit - 1))
        pipe = self.redis.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hgetall(DELIVERY_KEY + delivery_id)
        return [Delivery.from_hash(fields) for fields in pipe.execute() if fields]

    def outstanding(self) -> int:
        """Deliveries waiting for an attempt or in the middle of one."""
        return int(self.redis.zcard(DUE_KEY)) + int(self.redis.zcard(LEASED_KEY))

    def trim(self, *, now: float) -> None:
        """Forget index and dead-letter entries older than the retention (their records expired already)."""
        cutoff = now - self.retention_s
        self.redis.zremrangebyscore(INDEX_KEY, "-inf", cutoff)
        self.redis.zremrangebyscore(DEAD_KEY, "-inf", cutoff)

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[script](keys=keys, args=args)
