"""`llavaguard banks create|import|list|remove|export`: manage the hash banks workers match against.

Run it where the workers' Redis is reachable (LLAVAGUARD_REDIS_URL). Workers pick a change up within
LLAVAGUARD_BANK_REFRESH_S. Hash files are outside data: read at most MAX_FILE_BYTES, every bad line reported
with its number, and by default nothing is imported when any line is bad (`--skip-invalid` imports the rest).
Exit codes: 0 done, 1 the request or the file was refused (nothing changed), 2 a bad setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

import redis

from worker.banks.entries import ACTIONS, make_config
from worker.banks.formats import FORMATS, MAX_REPORTED_PROBLEMS, dump, parse
from worker.banks.store import BankError, BankStore

MAX_FILE_BYTES = 64 * 1024 * 1024
"""About a million hashes with ids; a larger file is split by the operator, not read into memory."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("banks", help="hash banks of known content (block or allow)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="a new, empty bank")
    create.add_argument("name")
    create.add_argument("--action", choices=ACTIONS, required=True)
    create.add_argument("--category", help="block banks: O1 ... O9, the category their matches are rated")
    create.add_argument("--pdq-distance", type=int, help="max PDQ Hamming distance (default 31 block, 16 allow)")
    imp = verbs.add_parser("import", help="add the hashes of a file (- for stdin); importing twice adds nothing")
    imp.add_argument("name")
    imp.add_argument("file")
    imp.add_argument("--format", choices=FORMATS, required=True)
    imp.add_argument("--skip-invalid", action="store_true", help="import the valid lines, report the others")
    verbs.add_parser("list", help="banks with their entry counts, as JSON lines")
    remove = verbs.add_parser("remove", help="delete a bank, or one hash from it")
    remove.add_argument("name")
    remove.add_argument("--entry", metavar="HASH", help="remove only this hash")
    export = verbs.add_parser("export", help="print a bank's entries")
    export.add_argument("name")
    export.add_argument("--format", choices=FORMATS, default="jsonl")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.composition import bank_store
    from worker.settings import load_settings

    store = bank_store(load_settings())
    try:
        return int(_VERBS[args.verb](store, args))
    except (BankError, ValueError) as exc:
        print(f"llavaguard: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"llavaguard: Redis is unreachable or refused the request: {exc}", file=sys.stderr)
        return 1


def _create(store: BankStore, args: argparse.Namespace) -> int:
    config = make_config(args.name, args.action, args.category, args.pdq_distance)
    store.create(config)
    print(json.dumps({"name": config.name, **config.to_json()}))
    return 0


def _import(store: BankStore, args: argparse.Namespace) -> int:
    store.require(args.name)
    parsed = parse(_read_text(args.file), args.format)
    for problem in parsed.problems[:MAX_REPORTED_PROBLEMS]:
        print(f"llavaguard: {args.file}: {problem}", file=sys.stderr)
    if len(parsed.problems) > MAX_REPORTED_PROBLEMS:
        print(f"llavaguard: ... and {len(parsed.problems) - MAX_REPORTED_PROBLEMS} more bad lines", file=sys.stderr)
    if parsed.problems and not args.skip_invalid:
        print(f"llavaguard: {len(parsed.problems)} bad lines: nothing imported (--skip-invalid imports the rest)",
              file=sys.stderr)
        return 1
    new = store.add(args.name, parsed.entries)
    print(json.dumps({"bank": args.name, "read": len(parsed.entries), "new": new,
                      "invalid": len(parsed.problems), "entries": store.count(args.name)}))
    return 0


def _read_text(path: str) -> str:
    """At most MAX_FILE_BYTES of UTF-8 (a BOM is dropped); ValueError otherwise."""
    if path == "-":
        return _bounded(sys.stdin.buffer, path)
    try:
        with open(path, "rb") as handle:
            return _bounded(handle, path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def _bounded(handle: IO[bytes], path: str) -> str:
    data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES} bytes: split it")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _list(store: BankStore, args: argparse.Namespace) -> int:
    for config in store.configs():
        print(json.dumps({"name": config.name, **config.to_json(), "entries": store.count(config.name)}))
    return 0


def _remove(store: BankStore, args: argparse.Namespace) -> int:
    if args.entry is None:
        store.remove(args.name)
        print(json.dumps({"removed": args.name}))
        return 0
    removed = store.discard(args.name, args.entry)
    if not removed:
        print(f"llavaguard: bank {args.name!r} has no entry {args.entry[:70]!r}", file=sys.stderr)
        return 1
    print(json.dumps({"bank": args.name, "removed": removed, "entries": store.count(args.name)}))
    return 0


def _export(store: BankStore, args: argparse.Namespace) -> int:
    store.require(args.name)
    for line in dump(store.entries(args.name), args.format):
        sys.stdout.write(line + "\n")
    return 0


_VERBS = {"create": _create, "import": _import, "list": _list, "remove": _remove, "export": _export}
