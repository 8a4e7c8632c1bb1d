"""Leases on held messages: a living worker keeps its unacknowledged messages invisible to the restore scan.

kombu's Redis transport emulates acks: a delivered message sits in the `unacked` hash, its delivery tag in the
`unacked_index` sorted set scored by delivery time, and any consumer's periodic `restore_visible` pushes back
to its queue every tag scored more than `visibility_timeout` ago. Alone, that forces a choice between slow
recovery (a long timeout) and redelivering long tasks that are still running (a short one).

Here a timer on the consumer's own event loop re-scores (`ZADD ... XX`) every delivery tag the consumer's
channel still holds (running, reserved, or waiting for its retry countdown/ETA) every third of the
visibility timeout. Under prefork the main process holds every message, so this covers the children too. A
worker that dies or whose consumer loop wedges stops renewing, and its messages become visible within one
visibility timeout of its last renewal.

It must never add a tag: `XX` only updates members that exist, so a message acknowledged (or restored)
between reading the held tags and writing cannot be resurrected into the index. It never raises into the
consumer loop: a failed renewal is logged and the next tick tries again.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import redis
import structlog
from celery import bootsteps

from worker.consumer_timer import ConsumerTimerStep

log = structlog.get_logger(__name__)
RENEWALS_PER_TIMEOUT = 3
"""Renew every third of the visibility timeout: two renewals may fail or run late before a lease lapses."""


def renewal_interval_s(visibility_timeout_s: float) -> float:
    return visibility_timeout_s / RENEWALS_PER_TIMEOUT


def held_tags(channel: Any) -> list[str]:
    """Delivery tags the channel holds unacknowledged (kombu's virtual QoS keeps them in `_delivered`)."""
    qos = getattr(channel, "qos", None)
    delivered = getattr(qos, "_delivered", None)
    if not delivered:
        return []
    dirty = set(getattr(qos, "_dirty", ()))  # acknowledged, not yet flushed from `_delivered`
    for _ in range(3):  # task threads ack concurrently; a copy mutated mid-way is simply taken again
        try:
            return [str(tag) for tag in list(delivered) if tag not in dirty]
        except RuntimeError:
            continue
    return []


def renew(client: Any, index_key: str, tags: Collection[str], now: float) -> int:
    """Re-score the tags still present in the index; returns how many were renewed."""
    if not tags:
        return 0
    changed = client.zadd(index_key, dict.fromkeys(tags, now), xx=True, ch=True)
    return int(changed or 0)


def renew_held(consumer: Any) -> None:
    """One tick: renew the leases of everything the consumer's task channel holds."""
    task_consumer = getattr(consumer, "task_consumer", None)
    channel = getattr(task_consumer, "channel", None)
    if channel is None:
        return  # reconnecting: the held messages went with the old channel
    tags = held_tags(channel)
    if not tags:
        return
    try:
        # The channel's own client: same connection settings and `global_keyprefix` as kombu's QoS.
        with channel.conn_or_acquire() as client:
            renewed = renew(client, channel.unacked_index_key, tags, time.time())
    except (redis.RedisError, OSError, *getattr(channel, "connection_errors", ())) as exc:
        log.warning("lease.renew_failed", held=len(tags), error=str(exc))
        return
    log.debug("lease.renewed", held=len(tags), renewed=renewed)


def lease_step(visibility_timeout_s: float) -> type[bootsteps.StartStopStep]:
    """A consumer bootstep renewing the held messages' leases from a timer on the consumer's event loop."""
    interval_s = renewal_interval_s(visibility_timeout_s)

    class LeaseStep(ConsumerTimerStep):
        def start(self, c: Any) -> None:
            self.repeat(c, interval_s, renew_held, c)

    return LeaseStep
