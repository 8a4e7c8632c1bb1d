"""`llavaguard worker`: a Celery worker with this configuration."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

from worker.queues import WORKER_QUEUES


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("worker", help="start a Celery worker with this configuration")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="threads per worker process (default: LLAVAGUARD_INFLIGHT_WINDOW)")
    parser.add_argument("--queues", default=",".join(WORKER_QUEUES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    parser.add_argument("--hostname", default=None)
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(handler=run)


def default_hostname() -> str:
    """The node name pattern used without --hostname; `llavaguard health` expands the same one."""
    return f"llavaguard-{socket.gethostname()}-%i@%h"


def run(args: argparse.Namespace) -> int:
    from worker.observability.multiproc import cleanup_multiprocess, prepare_multiprocess
    from worker.settings import load_settings

    # Before worker.tasks is imported: prometheus_client reads PROMETHEUS_MULTIPROC_DIR on its first import.
    metrics_dir = prepare_multiprocess() if load_settings().metrics_port else None
    try:
        return _run(args, metrics_dir)
    finally:
        if metrics_dir is not None:
            cleanup_multiprocess(metrics_dir)


def _run(args: argparse.Namespace, metrics_dir: Path | None) -> int:
    from worker.observability.wiring import install
    from worker.redelivery.lease import lease_step
    from worker.tasks import app, settings

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    try:
        install(app, settings, queues, metrics_dir)
    except OSError as exc:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        print(f"llavaguard: cannot serve metrics on {where} (LLAVAGUARD_METRICS_PORT): {exc}", file=sys.stderr)
        return 2
    app.steps["consumer"].add(lease_step(settings.visibility_timeout_s))
    concurrency = args.concurrency or settings.inflight_window
    hostname = args.hostname or default_hostname()
    quiet = ["--quiet"] if settings.log_json else []  # Celery's banner is not JSON
    app.worker_main([
        *quiet, "worker", f"--pool={args.pool}", f"--concurrency={concurrency}", f"--queues={args.queues}",
        f"--hostname={hostname}", f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle",
    ])
    return 0
