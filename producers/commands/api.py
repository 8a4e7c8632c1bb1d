"""`llavaguard api`: the HTTP ingestion API (FastAPI under uvicorn) for backends not written in Python."""

from __future__ import annotations

import argparse
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
    from producers.api.serving import serve
    from worker.settings import load_settings

    serve(load_settings(), host=args.host, port=args.port, workers=args.workers)
    return 0
