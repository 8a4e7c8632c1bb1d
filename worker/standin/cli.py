"""`python -m worker.standin` / `llavaguard standin`: run the SGLang stand-in in the foreground.

The start-up line says plainly that this is not LlavaGuard, so nobody mistakes a local run for moderation.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from worker.standin.dialects import DIALECTS
from worker.standin.sglang_standin import SGLangStandIn

BANNER = (
    "SGLang STAND-IN listening on {url}: synthetic verdicts derived from image colour, NOT LlavaGuard "
    "(no model is loaded; for tests and local runs only)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llavaguard standin",
        description="Serve SGLang's HTTP API with synthetic, colour-derived verdicts. Not a model.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--max-running", type=int, default=32, help="requests served at once")
    parser.add_argument("--service-time-s", type=float, default=0.05, help="seconds each request takes")
    parser.add_argument("--max-queued", type=int, default=None, help="queue bound; beyond it 503 queue full")
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first N requests 503")
    parser.add_argument("--garbage-first", type=int, default=0, help="answer the first N requests with ':'")
    parser.add_argument("--sloppy", action="store_true", help="unconstrained answers in fences with prose")
    parser.add_argument("--api-key", default=None, help="require `Authorization: Bearer <key>`")
    parser.add_argument("--no-regex", dest="regex", action="store_false",
                        help="refuse the `regex` constraint (400) like a build without regex grammar support")
    parser.add_argument("--dialect", choices=DIALECTS, default="sglang",
                        help="whose chat-completions fields and errors to speak (sglang, vllm, openai)")
    parser.add_argument("--retry-after-s", type=float, default=None, help="Retry-After sent when overloaded")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    standin = SGLangStandIn(
        args.host, args.port, args.max_running, args.service_time_s, args.max_queued,
        fail_first=args.fail_first, garbage_first=args.garbage_first, sloppy=args.sloppy,
        api_key=args.api_key, regex=args.regex, dialect=args.dialect, retry_after_s=args.retry_after_s,
    )
    stop = threading.Event()
    with contextlib.suppress(ValueError):  # signal handlers can only be set from the main thread
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with standin:
        print(BANNER.format(url=standin.url), file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0
