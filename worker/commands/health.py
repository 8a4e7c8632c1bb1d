"""`llavaguard health`: exit 0 when this host's workers consume, 1 when one does not (for compose/Kubernetes).

Which workers: `--hostname NAME` checks that node; without it, every worker registered as running on this
host (`worker.observability.registry`): one in a container, all of them when several were started by hand.
A killed worker stays registered, so health fails until it is restarted (any worker starting on the host
drops registrations of processes that are gone) or `FORGET_AFTER_S` passes. No registered worker fails too.

Each one fails when Redis cannot be reached from here, when its heartbeat has expired (the worker is down,
stopped, wedged, or cannot reach Redis itself), or when its heartbeat says it stopped consuming: messages
waiting, free slots, nothing received for `LLAVAGUARD_HEALTH_STALL_S` (see worker/observability/heartbeat.py).
Prints one JSON line saying why.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

REDIS_TIMEOUT_S = 3.0


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "health", help="exit 0 if this host's workers reach Redis and consume, else 1 (a container healthcheck)"
    )
    parser.add_argument("--hostname", default=None,
                        help="check only the worker with this node name (its --hostname; %%h is expanded)")
    parser.add_argument("--stall-s", type=float, default=None,
                        help="seconds without consuming that count as stalled (default: LLAVAGUARD_HEALTH_STALL_S)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import redis

    from worker.settings import load_settings

    settings = load_settings()
    stall_s = args.stall_s if args.stall_s is not None else settings.health_stall_s
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    try:
        client.ping()
        report = _one(client, args.hostname, stall_s) if args.hostname else _host(client, stall_s)
    except redis.RedisError as exc:
        report = {"healthy": False, "reason": f"Redis unreachable: {exc}"}
    finally:
        client.close()
    print(json.dumps(report), flush=True)
    return 0 if report["healthy"] else 1


def _one(client: Any, hostname: str, stall_s: float) -> dict[str, Any]:
    from celery.utils.nodenames import default_nodename, host_format

    from worker.observability.heartbeat import read_beat, verdict_on

    worker = host_format(default_nodename(hostname))
    healthy, why = verdict_on(read_beat(client, worker), worker, stall_s=stall_s)
    return {"healthy": healthy, "worker": worker, "reason": why}


def _host(client: Any, stall_s: float) -> dict[str, Any]:
    from worker.observability.heartbeat import read_beat, verdict_on
    from worker.observability.registry import registered, this_host

    host = this_host()
    workers = [r.worker for r in registered(client, host)]
    if not workers:
        return {"healthy": False, "host": host, "workers": [],
                "reason": f"no worker registered on {host}: none started yet, or all stopped"}
    checks = [(w, *verdict_on(read_beat(client, w), w, stall_s=stall_s)) for w in workers]
    failing = [why for _, healthy, why in checks if not healthy]
    reason = "; ".join(failing) if failing else f"{len(workers)} worker(s) on {host} consuming"
    return {
        "healthy": not failing, "host": host, "reason": reason,
        "workers": [{"worker": w, "healthy": healthy, "reason": why} for w, healthy, why in checks],
    }
