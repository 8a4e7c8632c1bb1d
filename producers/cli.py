"""`llavaguard` command line: the worker's commands (worker/commands) and the producers' (producers/commands).

The root lives in producers because producers may import worker, never the other way round. Each subcommand
lives in its own module with a `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from producers.commands import api, audit, export, review, submit
from worker.commands import banks, deadletter, health, run_worker, standin, webhooks
from worker.errors import SettingsError
from worker.settings import load_settings

COMMAND_MODULES = (run_worker, submit, standin, webhooks, api, health, audit, export, deadletter, review, banks)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["standin"]:  # its own parser takes every option, --help included
        return standin.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        load_settings()  # a bad setting fails here, as one line naming the variable
        return int(args.handler(args))
    except SettingsError as exc:
        print(f"llavaguard: invalid setting: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llavaguard", description="Image moderation with LlavaGuard.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
