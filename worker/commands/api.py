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
    import uvicorn

    from producers.api import create_app
    from worker.settings import load_settings

    settings = load_settings()
    if args.workers > 1:
        create_app(settings)  # fail here, once, on a bad configuration (no keys)
        uvicorn.run("producers.api:create_app", factory=True, host=args.host, port=args.port,
                    workers=args.workers, proxy_headers=True)
    else:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, proxy_headers=True)
    return 0
