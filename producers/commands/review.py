"""`llavaguard review list|show|label`: the human review queue from a shell (issue 11).

Like `export`, it works on the store and Redis directly (operators with access to both); the reviewer it
records is `--reviewer`, by default `cli:<login name>`. Exit status: 0 done, 1 unknown item or a conflicting
earlier label, 2 a bad argument.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.review.desk import ReviewDesk


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("review", help="list, show and label items under human review")
    verbs = parser.add_subparsers(required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the queue: one line per item (id, reason, model rating, score)")
    listing.add_argument("--status", choices=("pending", "reviewed"), default="pending")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="the verdicts as JSON lines")
    listing.set_defaults(handler=run_list)
    show = verbs.add_parser("show", help="one item's verdict as JSON")
    show.add_argument("id")
    show.add_argument("--image", type=Path, default=None, metavar="FILE", help="write the retained copy here")
    show.set_defaults(handler=run_show)
    label = verbs.add_parser("label", help="record a label: it becomes the verdict's final decision")
    label.add_argument("id")
    label.add_argument("--rating", required=True, help="Safe (allow) or Unsafe (block)")
    label.add_argument("--category", required=True, help="a category code (O1 .. O9, NA) or its full name")
    label.add_argument("--note", default=None)
    label.add_argument("--reviewer", default=None, help="recorded as the reviewer (default: cli:<login name>)")
    label.set_defaults(handler=run_label)


def run_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        return _fail("--limit must be at least 1", 2)
    desk = _desk()
    for verdict in desk.items(args.status, limit=args.limit):
        if args.json:
            print(verdict.model_dump_json())
            continue
        review = verdict.review
        score = "-" if verdict.score is None else f"{verdict.score:.3f}"
        print(f"{verdict.id}\t{review.reason if review else '-'}\t{verdict.rating}\t{verdict.category}\t"
              f"score={score}\tdecision={verdict.decision}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from worker.errors import ReviewNotFound

    desk = _desk()
    try:
        verdict = desk.get(args.id)
    except ReviewNotFound as exc:
        return _fail(str(exc), 1)
    print(json.dumps(verdict.model_dump(mode="json"), indent=2, ensure_ascii=False))
    if args.image is not None:
        image = desk.image(args.id)
        if image is None:
            return _fail(f"the retained copy of {args.id} was deleted or never kept", 1)
        args.image.write_bytes(image.data)
    return 0


def run_label(args: argparse.Namespace) -> int:
    from worker.errors import ReviewConflict, ReviewNotFound

    reviewer = args.reviewer or f"cli:{getpass.getuser()}"
    try:
        verdict = _desk().label(args.id, args.rating, args.category, args.note, reviewer)
    except (ReviewNotFound, ReviewConflict) as exc:
        return _fail(str(exc), 1)
    except ValueError as exc:
        return _fail(str(exc), 2)
    print(f"{verdict.id}: decision={verdict.decision} (model said {verdict.rating})")
    return 0


def _desk() -> ReviewDesk:
    from worker.composition import review_desk
    from worker.settings import load_settings
    from worker.stores import require_existing_store

    settings = load_settings()
    require_existing_store(settings.store_url)
    return review_desk(settings)


def _fail(message: str, status: int) -> int:
    print(f"llavaguard review: {message}", file=sys.stderr)
    return status
