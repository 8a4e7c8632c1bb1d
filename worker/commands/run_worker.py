"""`llavaguard worker`: a Celery worker with this configuration."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from worker.queues import QUEUES


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("worker", help="start a Celery worker with this configuration")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="threads per worker process (default: LLAVAGUARD_INFLIGHT_WINDOW)")
    parser.add_argument("--queues", default=",".join(QUEUES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    parser.add_argument("--hostname", default=None)
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.tasks import app, settings

    concurrency = args.concurrency or settings.inflight_window
    hostname = args.hostname or f"llavaguard-{socket.gethostname()}-%i@%h"
    app.worker_main([
        "worker", f"--pool={args.pool}", f"--concurrency={concurrency}", f"--queues={args.queues}",
        f"--hostname={hostname}", f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle",
    ])
    return 0
