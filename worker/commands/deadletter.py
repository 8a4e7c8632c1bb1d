"""`llavaguard deadletter list|show ID|replay ID|purge`: inspect and replay refused messages.

Reads and edits the Redis list `llavaguard:deadletter` only; a replayed message goes back to the exact list it
was popped from (the priority sub-queue included) and is checked again by the guard like any other.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.broker.deadletter import summary


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("deadletter", help="inspect, replay or purge dead letters")
    verbs = parser.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="JSON lines, newest first")
    listing.add_argument("--raw", action="store_true", help="include the raw message")
    verbs.add_parser("show", help="one entry with its raw message").add_argument("id")
    verbs.add_parser("replay", help="put the raw message back on its queue").add_argument("id")
    verbs.add_parser("purge", help="delete all entries (or one reason's)").add_argument("--reason")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.composition import dead_letter_list
    from worker.settings import load_settings

    letters = dead_letter_list(load_settings())
    if args.verb == "list":
        for entry in letters.entries():
            print(json.dumps(entry if args.raw else summary(entry)))
        return 0
    if args.verb == "purge":
        print(letters.purge(args.reason))
        return 0
    return _one(letters, args.verb, args.id)


def _one(letters: Any, verb: str, entry_id: str) -> int:
    if verb == "show":
        found = letters.find(entry_id)
        if found is None:
            print(f"llavaguard: no dead letter {entry_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(found[1]))
        return 0
    try:
        entry = letters.replay(entry_id)
    except (LookupError, ValueError) as exc:
        print(f"llavaguard: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"replayed": entry["id"], "queue": entry["queue"]}))
    return 0
