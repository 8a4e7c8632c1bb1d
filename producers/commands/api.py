"""`llavaguard api`: the HTTP ingestion API (FastAPI under uvicorn) for backends not written in Python."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "api", help="serve the HTTP ingestion API (keys from LLAVAGUARD_API_KEYS)"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.observability.multiproc import MetricsDir, prepare_multiprocess, shared_metrics_dir
    from worker.settings import load_settings

    settings = load_settings()
    metrics_dir: MetricsDir | None = None
    if settings.api_metrics_port:
        # Before the app is imported: prometheus_client reads PROMETHEUS_MULTIPROC_DIR on its first import,
        # and the `--workers` children inherit it. Never the workers' directory: their sums would mix.
        configured = None if settings.metrics_dir is None else settings.metrics_dir / "api"
        try:
            metrics_dir = prepare_multiprocess(shared_metrics_dir(settings.api_metrics_port, configured))
        except OSError as exc:
            print(f"llavaguard: cannot use the metrics directory (LLAVAGUARD_METRICS_DIR): {exc}", file=sys.stderr)
            return 2
    try:
        from producers.api.serving import serve, serve_metrics

        if metrics_dir is not None:
            try:
                serve_metrics(settings, metrics_dir.path)
            except OSError as exc:
                where = f"{settings.api_metrics_host}:{settings.api_metrics_port}"
                print(f"llavaguard: cannot serve metrics on {where} (LLAVAGUARD_API_METRICS_PORT): {exc}",
                      file=sys.stderr)
                return 2
        serve(settings, host=args.host, port=args.port, workers=args.workers)
    finally:
        if metrics_dir is not None:
            metrics_dir.release()
    return 0
