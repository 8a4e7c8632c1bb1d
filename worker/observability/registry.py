"""The workers registered as running on each host, so that `llavaguard health` checks every one of them.

`llavaguard:workers:<host>` is a Redis hash: worker node name -> `{"pid": ..., "seen_at": ...}`, refreshed by
each heartbeat tick (next to the heartbeat key, `worker.observability.heartbeat`). A worker that stops cleanly
removes itself. A killed worker stays registered while its heartbeat expires, so health fails until either
- a worker starts on the same host: it drops the entries whose process no longer exists (a restart), or
- `FORGET_AFTER_S` passes without a beat: health stops asking about it (a worker removed for good).

Hosts are `socket.gethostname()`, as Celery's `%h`; inside a container that is the container's own name, so
a container's healthcheck sees its one worker only. Never store anything but names, pids and times here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

import redis

from worker.observability.multiproc import process_alive
from worker.queues import KEY_PREFIX

WORKERS_KEY = KEY_PREFIX + "workers:"
"""`llavaguard:workers:<host>`: hash of the worker node names registered on that host."""
FORGET_AFTER_S = 600.0
"""A registered worker without a beat for this long is no longer asked about (it was removed, not restarted).

Ten minutes: long enough for every compose/Kubernetes/systemd healthcheck to see the failure and restart it."""


@dataclass(frozen=True)
class Registration:
    worker: str
    pid: int
    seen_at: float


def this_host() -> str:
    return socket.gethostname()


def register(pipe: redis.client.Pipeline[bytes], worker: str, now: float, host: str | None = None) -> None:
    """Queue the commands that (re)register `worker` on a pipeline (the heartbeat tick's, one round trip)."""
    key = WORKERS_KEY + (host or this_host())
    pipe.hset(key, worker, json.dumps({"pid": os.getpid(), "seen_at": now}))
    pipe.expire(key, round(FORGET_AFTER_S))


def deregister(client: redis.Redis[bytes], worker: str, host: str | None = None) -> None:
    client.hdel(WORKERS_KEY + (host or this_host()), worker)


def registered(client: redis.Redis[bytes], host: str, now: float | None = None) -> list[Registration]:
    """The workers to check on `host`: seen within `FORGET_AFTER_S`, sorted by name."""
    now = time.time() if now is None else now
    return [r for r in _entries(client, host) if now - r.seen_at <= FORGET_AFTER_S]


def forget_dead(client: redis.Redis[bytes], host: str | None = None, now: float | None = None) -> list[str]:
    """Drop this host's registrations whose process is gone or long silent (run by a starting worker)."""
    host = host or this_host()
    now = time.time() if now is None else now
    gone = [
        r.worker for r in _entries(client, host)
        if now - r.seen_at > FORGET_AFTER_S or not process_alive(r.pid)
    ]
    if gone:
        client.hdel(WORKERS_KEY + host, *gone)
    return gone


def _entries(client: redis.Redis[bytes], host: str) -> list[Registration]:
    found = []
    for name, raw in client.hgetall(WORKERS_KEY + host).items():
        entry = json.loads(raw)
        found.append(Registration(name.decode(), int(entry["pid"]), float(entry["seen_at"])))
    return sorted(found, key=lambda r: r.worker)
