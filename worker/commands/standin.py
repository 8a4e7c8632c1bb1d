"""`llavaguard standin`: the SGLang stand-in (synthetic verdicts from image colour, NOT the model)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "standin", help="run the SGLang stand-in (synthetic verdicts, NOT the model)", add_help=False
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return main(list(args.rest))


def main(argv: list[str]) -> int:
    from worker.standin.cli import main as standin_main

    return standin_main(argv)
