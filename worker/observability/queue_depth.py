"""How many messages wait in each queue, read from Redis when asked (a scrape, a heartbeat), never cached.

kombu's Redis transport keeps one list per queue and priority step. With this app's transport
(`priority_steps=[0, 3, 6, 9]`, names by `worker.queues.priority_list`) the queue `realtime` is the lists
`realtime`, `realtime:3`, `realtime:6` and `realtime:9`; messages delivered to a worker but not yet
acknowledged (running, or waiting for a retry countdown) sit in the `unacked` hash instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis

from worker.queues import priority_list

KOMBU_DEFAULT_STEPS = (0, 3, 6, 9)


def broker_keys(queue: str, transport_options: Mapping[str, Any]) -> list[str]:
    """The Redis lists holding `queue`'s messages, one per priority step (step 0 is the bare name)."""
    steps = transport_options.get("priority_steps", KOMBU_DEFAULT_STEPS)
    return [queue, *(priority_list(queue, step) for step in steps if step)]


def unacked_key(transport_options: Mapping[str, Any]) -> str:
    return str(transport_options.get("unacked_key", "unacked"))


def queue_depths(
    client: redis.Redis[bytes], queues: Iterable[str], transport_options: Mapping[str, Any]
) -> tuple[dict[str, int], int]:
    """(messages waiting per queue, messages delivered but unacknowledged), in one round trip."""
    layout = {queue: broker_keys(queue, transport_options) for queue in queues}
    pipe = client.pipeline(transaction=False)
    for keys in layout.values():
        for key in keys:
            pipe.llen(key)
    pipe.hlen(unacked_key(transport_options))
    counts = iter(pipe.execute())
    depths = {queue: sum(int(next(counts)) for _ in keys) for queue, keys in layout.items()}
    return depths, int(next(counts))
