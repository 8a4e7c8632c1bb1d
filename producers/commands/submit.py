"""`llavaguard submit` and `llavaguard get`: the SDK from the shell, JSON lines out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from worker.queues import QUEUES, REALTIME_QUEUE


def register(sub: Any) -> None:
    submit: argparse.ArgumentParser = sub.add_parser("submit", help="enqueue images; print JSON lines")
    submit.add_argument("images", nargs="+", metavar="FILE_OR_URL")
    submit.add_argument("--wait", action="store_true", help="wait for each verdict and print it")
    submit.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per verdict")
    submit.add_argument("--policy", default=None)
    submit.add_argument("--non-violating", default="", help="categories to allow, e.g. O2,O6")
    submit.add_argument("--metadata", default=None, help="JSON object echoed in the verdict")
    submit.add_argument("--queue", default=REALTIME_QUEUE, choices=list(QUEUES))
    submit.set_defaults(handler=run_submit)

    get: argparse.ArgumentParser = sub.add_parser("get", help="print a stored verdict as JSON")
    get.add_argument("id")
    get.set_defaults(handler=run_get)


def run_submit(args: argparse.Namespace) -> int:
    from producers.client import ModerationClient

    non_violating = [c for c in args.non_violating.split(",") if c.strip()]
    metadata = json.loads(args.metadata) if args.metadata else None
    rejected = 0
    with ModerationClient(queue=args.queue) as client:
        submitted: list[tuple[str, str]] = []
        for image in args.images:
            try:
                payload: str | Path = image if "://" in image else Path(image)  # a file: source file://…
                moderation_id = client.submit(payload, policy=args.policy, non_violating=non_violating,
                                              metadata=metadata)
            except (OSError, ValueError) as exc:
                rejected += 1
                print(json.dumps({"image": image, "status": "rejected", "error": str(exc)}), flush=True)
                continue
            submitted.append((image, moderation_id))
        for image, moderation_id in submitted:
            if args.wait:
                print(client.wait(moderation_id, timeout=args.timeout).model_dump_json(), flush=True)
            else:
                print(json.dumps({"id": moderation_id, "image": image, "status": "pending"}), flush=True)
    return 1 if rejected else 0


def run_get(args: argparse.Namespace) -> int:
    from producers.client import ModerationClient

    with ModerationClient() as client:
        verdict = client.get(args.id)
        if verdict is not None:
            print(verdict.model_dump_json())
            return 0
        pending = client.is_submitted(args.id)
        print(json.dumps({"id": args.id, "status": "pending" if pending else "unknown"}))
        return 0 if pending else 1
