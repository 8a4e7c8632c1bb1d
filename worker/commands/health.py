"""`llavaguard health`: exit 0 when this host's worker consumes, 1 when it does not (for compose/Kubernetes).

Fails when Redis cannot be reached from here, when the worker's heartbeat has expired (the worker is down,
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
        "health", help="exit 0 if this host's worker reaches Redis and consumes, else 1 (a container healthcheck)"
    )
    parser.add_argument("--hostname", default=None,
                        help="the worker's --hostname, if it was given one (default: the worker's default)")
    parser.add_argument("--stall-s", type=float, default=None,
                        help="seconds without consuming that count as stalled (default: LLAVAGUARD_HEALTH_STALL_S)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import redis
    from celery.utils.nodenames import default_nodename, host_format

    from worker.commands.run_worker import default_hostname
    from worker.observability.heartbeat import read_beat, verdict_on
    from worker.settings import load_settings

    settings = load_settings()
    worker = host_format(default_nodename(args.hostname or default_hostname()))
    stall_s = args.stall_s if args.stall_s is not None else settings.health_stall_s
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    try:
        client.ping()
        healthy, why = verdict_on(read_beat(client, worker), worker, stall_s=stall_s)
    except redis.RedisError as exc:
        healthy, why = False, f"Redis unreachable: {exc}"
    finally:
        client.close()
    print(json.dumps({"healthy": healthy, "worker": worker, "reason": why}), flush=True)
    return 0 if healthy else 1
