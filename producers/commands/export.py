"""`llavaguard export`: stored verdicts as JSON lines or CSV on stdout, filtered (for dataset curation)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from producers.export import FORMATS


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "export", help="print stored verdicts (JSON lines or CSV), each with image.source"
    )
    parser.add_argument("--format", choices=FORMATS, default="jsonl")
    parser.add_argument("--rating", default=None, help="Safe or Unsafe")
    parser.add_argument("--category", default=None, help="a category code (O1 .. O9, NA) or its full name")
    parser.add_argument("--since", default=None, help="completed at or after: ISO 8601, or an age like 24h, 7d")
    parser.add_argument("--until", default=None, help="completed before: ISO 8601, or an age")
    parser.add_argument("--limit", type=int, default=None, help="at most this many verdicts")
    parser.add_argument("--audit", default=None, metavar="NAME", help="only the verdicts of this audit")
    parser.add_argument("--status", default=None, choices=("completed", "failed"), help="only these verdicts")
    parser.add_argument("--decision", default=None, choices=("allow", "review", "block"), help="only these verdicts")
    parser.add_argument("--reviewed", action="store_true",
                        help="only verdicts a human has labelled; CSV: model and human answers side by side")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from producers.export import iter_verdicts, parse_instant, reviewed_only, write
    from worker.composition import verdict_store
    from worker.settings import load_settings
    from worker.stores import VerdictQuery, require_existing_store

    try:
        query = VerdictQuery.build(
            rating=args.rating, category=args.category,
            since=parse_instant(args.since) if args.since else None,
            until=parse_instant(args.until) if args.until else None,
            limit=None if args.reviewed else args.limit,  # --reviewed selects after listing: the limit applies then
            status=args.status, audit=args.audit, decision=args.decision,
        )
    except ValueError as exc:
        print(f"llavaguard export: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    require_existing_store(settings.store_url)  # an export never creates an empty store (StoreNotFound)
    store = verdict_store(settings)
    try:
        verdicts = iter_verdicts(store, query)
        if args.reviewed:
            verdicts = reviewed_only(verdicts, args.limit)
        write(verdicts, sys.stdout, args.format, reviewed=args.reviewed)
    finally:
        store.close()
    sys.stdout.flush()
    return 0
