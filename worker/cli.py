"""`llavaguard` command line: run a worker, submit images, read verdicts, run the SGLang stand-in."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from worker.errors import SettingsError
from worker.queues import QUEUES
from worker.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        load_settings()  # a bad setting fails here, as one line naming the variable
        return int(args.handler(args))
    except SettingsError as exc:
        print(f"llavaguard: invalid setting: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llavaguard", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    worker = sub.add_parser("worker", help="start a Celery worker with this configuration")
    worker.add_argument("--concurrency", type=int, default=None,
                        help="threads per worker process (default: LLAVAGUARD_INFLIGHT_WINDOW)")
    worker.add_argument("--queues", default=",".join(QUEUES), help="comma-separated (default: %(default)s)")
    worker.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    worker.add_argument("--hostname", default=None)
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=_run_worker)

    submit = sub.add_parser("submit", help="enqueue images; print JSON lines")
    submit.add_argument("images", nargs="+", metavar="FILE_OR_URL")
    submit.add_argument("--wait", action="store_true", help="wait for each verdict and print it")
    submit.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per verdict")
    submit.add_argument("--policy", default=None)
    submit.add_argument("--non-violating", default="", help="categories to allow, e.g. O2,O6")
    submit.add_argument("--metadata", default=None, help="JSON object echoed in the verdict")
    submit.add_argument("--queue", default="realtime", choices=list(QUEUES))
    submit.set_defaults(handler=_submit)

    get = sub.add_parser("get", help="print a stored verdict as JSON")
    get.add_argument("id")
    get.set_defaults(handler=_get)

    standin = sub.add_parser("standin", help="run the SGLang stand-in (synthetic verdicts, NOT the model)",
                             add_help=False)
    standin.add_argument("rest", nargs=argparse.REMAINDER)
    standin.set_defaults(handler=_standin)
    return parser


def _run_worker(args: argparse.Namespace) -> int:
    from worker.tasks import app, settings

    concurrency = args.concurrency or settings.inflight_window
    hostname = args.hostname or f"llavaguard-{socket.gethostname()}-%i@%h"
    argv = [
        "worker", f"--pool={args.pool}", f"--concurrency={concurrency}", f"--queues={args.queues}",
        f"--hostname={hostname}", f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle",
    ]
    app.worker_main(argv)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from producers.client import ModerationClient

    non_violating = [c for c in args.non_violating.split(",") if c.strip()]
    metadata = json.loads(args.metadata) if args.metadata else None
    failures = 0
    with ModerationClient(queue=args.queue) as client:
        ids: list[tuple[str, str]] = []
        for image in args.images:
            try:
                payload: str | bytes = image if "://" in image else Path(image).read_bytes()
                ids.append((image, client.submit(payload, policy=args.policy, non_violating=non_violating,
                                                 metadata=metadata)))
            except (OSError, ValueError) as exc:
                failures += 1
                print(json.dumps({"image": image, "status": "rejected", "error": str(exc)}), flush=True)
        for image, moderation_id in ids:
            if not args.wait:
                print(json.dumps({"id": moderation_id, "image": image, "status": "pending"}), flush=True)
                continue
            print(client.wait(moderation_id, timeout=args.timeout).model_dump_json(), flush=True)
    return 1 if failures else 0


def _get(args: argparse.Namespace) -> int:
    from producers.client import ModerationClient

    with ModerationClient() as client:
        verdict = client.get(args.id)
        if verdict is None:
            pending = client.is_submitted(args.id)
            print(json.dumps({"id": args.id, "status": "pending" if pending else "unknown"}))
            return 0 if pending else 1
        print(verdict.model_dump_json())
    return 0


def _standin(args: argparse.Namespace) -> int:
    from worker.standin.cli import main as standin_main

    return standin_main(list(args.rest))


if __name__ == "__main__":
    raise SystemExit(main())
