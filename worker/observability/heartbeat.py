"""Worker liveness for `llavaguard health`: a heartbeat written from the worker's own consumer loop.

What a fresh heartbeat proves: a timer on the consumer's event loop (the loop that takes messages from
Redis) ran within the last three intervals and wrote to Redis over the worker's connection. A stopped,
wedged or killed worker, or one that cannot reach Redis, lets the key expire and health fails.

A loop that runs but no longer consumes (celery #8030, #8082: after Redis reconnects) is caught as well:
each tick compares the backlog of the worker's queues with the messages received since the previous tick.
While messages wait, the worker has free slots and nothing arrives, `starved_s` grows; health fails once
it passes `LLAVAGUARD_HEALTH_STALL_S`. A busy worker (no free slot) is never called stalled.

Each tick also registers the worker in its host's registry (`worker.observability.registry`), which is how
`llavaguard health` without `--hostname` knows which workers this host should have.

Nothing here imports prometheus_client: `llavaguard health` and the worker's main process both use it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import structlog

from worker.observability import registry
from worker.observability.queue_depth import queue_depths
from worker.queues import KEY_PREFIX

HEARTBEAT_KEY = KEY_PREFIX + "heartbeat:"
"""`llavaguard:heartbeat:<worker node name>`: the latest `Beat` as JSON, expiring after three intervals."""
TTL_INTERVALS = 3

log = structlog.get_logger(__name__)


@dataclass
class ConsumptionWatch:
    """Messages received by this worker (counted in the consumer loop) and how long it has been starved."""

    received: int = 0
    _seen: int = 0
    _starved_since: float | None = field(default=None, repr=False)

    def message_received(self) -> None:
        self.received += 1

    def starved_s(self, now: float, *, backlog: int, free_slots: int) -> float:
        """Seconds during which messages waited, a slot was free and nothing arrived; 0 otherwise."""
        arrived = self.received != self._seen
        self._seen = self.received
        if backlog > 0 and free_slots > 0 and not arrived:
            if self._starved_since is None:
                self._starved_since = now
            return now - self._starved_since
        self._starved_since = None
        return 0.0


WATCH = ConsumptionWatch()
"""The worker process's watch: `task_received` counts into it, the heartbeat tick reads it."""


@dataclass(frozen=True)
class Beat:
    worker: str
    host: str
    pid: int
    at: float
    queues: list[str]
    concurrency: int
    reserved: int
    backlog: int
    starved_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Beat:
        return cls(**json.loads(raw))


class Heartbeat:
    """Writes one worker's beat; `tick` runs on the consumer loop's timer."""

    def __init__(
        self, client: redis.Redis[bytes], worker: str, queues: Sequence[str],
        transport_options: dict[str, Any], interval_s: float, watch: ConsumptionWatch = WATCH,
    ) -> None:
        self.client = client
        self.worker = worker
        self.queues = list(queues)
        self.transport_options = transport_options
        self.ttl_s = max(1, round(interval_s * TTL_INTERVALS))
        self.watch = watch

    def tick(self, *, concurrency: int, reserved: int) -> Beat | None:
        try:
            depths, _ = queue_depths(self.client, self.queues, self.transport_options)
            backlog = sum(depths.values())
            now = time.time()
            beat = Beat(
                worker=self.worker, host=socket.gethostname(), pid=os.getpid(), at=now, queues=self.queues,
                concurrency=concurrency, reserved=reserved, backlog=backlog,
                starved_s=round(self.watch.starved_s(now, backlog=backlog, free_slots=concurrency - reserved), 3),
            )
            with self.client.pipeline(transaction=False) as pipe:
                pipe.set(HEARTBEAT_KEY + self.worker, beat.to_json(), ex=self.ttl_s)
                registry.register(pipe, self.worker, now, host=beat.host)
                pipe.execute()
        except redis.RedisError as exc:  # the key then expires: health reports it
            log.warning("worker.heartbeat_failed", error=str(exc))
            return None
        return beat

    def forget_dead_neighbours(self) -> None:
        """A (re)starting worker drops the registrations of this host's workers that no longer exist."""
        try:
            gone = registry.forget_dead(self.client)
        except redis.RedisError as exc:
            log.warning("worker.registry_cleanup_failed", error=str(exc))
            return
        if gone:
            log.info("worker.forgot_dead_workers", workers=gone)

    def clear(self) -> None:
        """A worker shutting down cleanly says so at once instead of waiting for the key to expire."""
        try:
            self.client.delete(HEARTBEAT_KEY + self.worker)
            registry.deregister(self.client, self.worker)
        except redis.RedisError as exc:
            log.warning("worker.heartbeat_clear_failed", error=str(exc))


def read_beat(client: redis.Redis[bytes], worker: str) -> Beat | None:
    raw = client.get(HEARTBEAT_KEY + worker)
    return None if raw is None else Beat.from_json(raw)


def verdict_on(beat: Beat | None, worker: str, *, stall_s: float) -> tuple[bool, str]:
    """(healthy, why) for one worker's latest beat."""
    if beat is None:
        return False, f"no heartbeat from {worker}: not running, stopped, or cannot reach Redis"
    if beat.starved_s > stall_s:
        return False, (
            f"{worker} stopped consuming: {beat.backlog} messages waiting, "
            f"{beat.concurrency - beat.reserved} free slots, nothing received for {beat.starved_s:.0f} s"
        )
    return True, f"{worker} consuming: {beat.reserved}/{beat.concurrency} busy, {beat.backlog} waiting"
