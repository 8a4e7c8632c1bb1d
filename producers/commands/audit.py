"""`llavaguard audit SOURCE`: judge a whole dataset (folder, manifest or S3 prefix) once, resumably."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.models import DEFAULT_POLICY

INTERRUPTED = 130
CONFIGURATION_ERROR = 3
"""Every verdict failed because of the workers' configuration (a setting missing on the workers)."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "audit", help="judge every image of a folder, manifest (.txt/.jsonl/.csv) or s3://bucket/prefix",
        description="Enqueue every image not yet judged under this policy (many per bulk message), wait for "
                    "the verdicts with a progress bar, print a summary. Run it again to resume.",
    )
    parser.add_argument("source", metavar="SOURCE", help="folder, manifest file, or s3://bucket/prefix")
    parser.add_argument("--policy", default=DEFAULT_POLICY, help="default: %(default)s")
    parser.add_argument("--non-violating", action="append", default=[], metavar="CODES",
                        help="categories to allow, e.g. O2,O6 (repeatable)")
    parser.add_argument("--upload-to", nargs="?", const="store", default=None, metavar="S3_PREFIX",
                        help="upload local files to s3://bucket/prefix (no value: the S3 verdict store's bucket) "
                             "instead of reading them from LLAVAGUARD_SHARED_ROOT")
    parser.add_argument("--batch-size", type=int, default=None, help="images per bulk message "
                        "(default: LLAVAGUARD_AUDIT_BATCH_SIZE)")
    parser.add_argument("--no-wait", dest="wait", action="store_false", help="enqueue, then exit")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="the audit's name, recorded on its verdicts (default: derived from SOURCE, the "
                             "policy and the non-violating codes; shown in the summary)")
    parser.add_argument("--retry-failed", nargs="?", const="all", default=None, metavar="CODES",
                        help="judge again the images whose verdicts failed: all, or only these error codes "
                             "(comma-separated, e.g. fetch_scheme_unsupported); new ids, metadata.retry_of "
                             "names the failed verdict")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from producers.bulk import AuditOptions, AuditSummary, run_audit
    from worker.settings import load_settings

    codes = [c for value in args.non_violating for c in value.split(",") if c.strip()]
    try:
        options = AuditOptions(args.source, args.policy, codes, args.upload_to, args.batch_size, args.wait,
                               args.progress and sys.stderr.isatty(), name=args.name,
                               retry_failed=_retry_codes(args.retry_failed))
        summary = run_audit(load_settings(), options)
    except ValueError as exc:
        print(f"llavaguard audit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        interrupted: AuditSummary | None = getattr(exc, "summary", None)
        if interrupted is not None:
            _print(interrupted, as_json=args.json)
        print("llavaguard audit: interrupted; what was enqueued is still judged by the workers. "
              "Run the same command again to resume.", file=sys.stderr)
        return INTERRUPTED
    _print(summary, as_json=args.json)
    if summary.configuration_error:
        print(f"llavaguard audit: {summary.configuration_error}", file=sys.stderr)
        return CONFIGURATION_ERROR
    return 1 if summary.rejected or (args.wait and summary.pending) else 0


def _retry_codes(value: str | None) -> frozenset[str] | None:
    """`--retry-failed` -> None (not given), empty (all codes) or the codes; ValueError for an unknown code."""
    from worker.errors import ErrorCode

    if value is None:
        return None
    codes = frozenset(code.strip().lower() for code in value.split(",") if code.strip())
    if codes <= {"all"}:
        return frozenset()
    known = {str(code) for code in ErrorCode}
    unknown = sorted(codes - known)
    if unknown:
        raise ValueError(f"--retry-failed: unknown error code(s) {', '.join(unknown)}")
    return codes


def _print(summary: Any, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict()), flush=True)
    else:
        print("\n".join(summary.lines()), flush=True)
