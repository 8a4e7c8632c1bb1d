"""`llavaguard worker`: a Celery worker with this configuration."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker.observability.multiproc import MetricsDir
from worker.queues import WORKER_QUEUES
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.stores import VerdictStore


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("worker", help="start a Celery worker with this configuration")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="threads per worker process (default: LLAVAGUARD_INFLIGHT_WINDOW)")
    parser.add_argument("--queues", default=",".join(WORKER_QUEUES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    parser.add_argument("--hostname", default=None,
                        help="node name (default: llavaguard-<pid>@<host>, unique per worker on a host)")
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(handler=run)


def default_hostname() -> str:
    """The node name without --hostname: the process id makes it unique among the workers of one host.

    `llavaguard health` finds these names in the host's worker registry (worker/observability/registry.py).
    """
    return f"llavaguard-{os.getpid()}@%h"


def run(args: argparse.Namespace) -> int:
    from worker.observability.multiproc import prepare_multiprocess, shared_metrics_dir
    from worker.settings import load_settings

    settings = load_settings()
    metrics_dir: MetricsDir | None = None
    if settings.metrics_port:
        # Before worker.tasks is imported: prometheus_client reads PROMETHEUS_MULTIPROC_DIR on its first import.
        try:
            metrics_dir = prepare_multiprocess(shared_metrics_dir(settings.metrics_port, settings.metrics_dir))
        except OSError as exc:
            print(f"llavaguard: cannot use the metrics directory (LLAVAGUARD_METRICS_DIR): {exc}", file=sys.stderr)
            return 2
    try:
        return _run(args, metrics_dir)
    finally:
        if metrics_dir is not None:
            metrics_dir.release()


def _run(args: argparse.Namespace, metrics_dir: MetricsDir | None) -> int:
    from celery import signals

    from worker import composition
    from worker.inference.preflight import report_model_server
    from worker.observability.wiring import install
    from worker.redelivery.lease import lease_step
    from worker.tasks import app, settings

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    try:
        install(app, composition.wiring_options(settings), queues,
                None if metrics_dir is None else metrics_dir.path)
    except OSError as exc:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        print(f"llavaguard: cannot serve metrics on {where} (LLAVAGUARD_METRICS_PORT): {exc}", file=sys.stderr)
        return 2
    probe = composition.model_server_probe(settings)
    if probe is not None:  # an in-process backend has no server to ask
        # Once the pool has forked (no thread of ours may hold a lock across a fork); a slow server delays nothing.
        signals.worker_ready.connect(lambda **_: threading.Thread(
            target=report_model_server, args=(probe, settings.backend),
            name="llavaguard-preflight", daemon=True).start(), weak=False)
    composition.decider(settings)  # a bad thresholds file stops the worker here, not at its first verdict
    create_store(composition.verdict_store, settings)  # before "ready.": a reader started after it finds the store
    app.steps["consumer"].add(lease_step(settings.visibility_timeout_s))
    # Workers (not producers) convert kombu's binding tables left with the pre-issue-9 separator (worker/broker).
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "migrate_legacy_bindings": True}
    concurrency = args.concurrency or settings.inflight_window
    hostname = args.hostname or default_hostname()
    quiet = ["--quiet"] if settings.log_json else []  # Celery's banner is not JSON
    app.worker_main([
        *quiet, "worker", f"--pool={args.pool}", f"--concurrency={concurrency}", f"--queues={args.queues}",
        f"--hostname={hostname}", f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle",
    ])
    return 0


def create_store(open_store: Callable[[Settings], VerdictStore], settings: Settings) -> None:
    """Create (and migrate) the verdict store when the worker starts, not with its first verdict.

    Readers never create a store (`StoreNotFound`), so a store must exist as soon as a worker runs; a
    store that cannot be reached now is only logged: the first moderation retries it like any outage.
    Runs in the main process before the pool forks; `close()` disposes of every connection it opened.
    """
    import structlog

    from worker.errors import LlavaguardError

    log = structlog.get_logger(__name__)
    try:
        open_store(settings).close()
    except LlavaguardError as exc:
        log.warning("store.unavailable_at_start", error=str(exc)[:500])
