"""`run_audit`: judge every image of a dataset once under one policy, resumably (`llavaguard audit`).

    source ──count──▶ progress bar total
    source ──Planner──▶ skip judged / skip queued / place local files / (backlog has room?) /
                        publish compact batches on `bulk`
           ──Waiter───▶ poll verdicts (re-enqueue lost ones) ──▶ AuditSummary

Interrupting at any point loses nothing: what was published stays queued and is judged by the workers; the
next run of the same audit resumes from the store and the audit's queued record (`queued.py`). At most
`LLAVAGUARD_AUDIT_BACKLOG` images wait in the queue at once (`backlog.py`), so Redis holds a few minutes of
work, not the dataset.

Every audit has a name (`--name`, or one derived from the source, policy and non-violating codes, the same on
every run), recorded on the verdicts it asks for (`Verdict.audit`) so that `llavaguard export --audit NAME`
selects them.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import redis

from producers.bulk.backlog import Backlog
from producers.bulk.placement import Placement, S3Upload, SharedRoot, parse_s3_prefix
from producers.bulk.planner import Planner
from producers.bulk.progress import Progress
from producers.bulk.queued import AuditQueue
from producers.bulk.sources import AuditItem, FolderSource, S3PrefixSource, Source, count, open_source
from producers.bulk.summary import AuditSummary
from producers.bulk.waiting import QueueProbe, Waiter
from producers.client import ModerationClient
from worker.buckets import BucketAllowlist
from worker.categories import normalise_codes
from worker.composition import s3_client
from worker.errors import ModerationFailed
from worker.models import DEFAULT_POLICY, Verdict
from worker.policy import PolicyRegistry
from worker.queues import BULK_QUEUE
from worker.settings import Settings

UPLOAD_TO_STORE = "store"
"""`--upload-to` without a value: the S3 verdict store's bucket, under `<prefix>/images/`."""


@dataclass(frozen=True)
class AuditOptions:
    source: str
    policy: str = DEFAULT_POLICY
    non_violating: list[str] = field(default_factory=list)
    upload_to: str | None = None
    batch_size: int | None = None
    wait: bool = True
    progress: bool = True
    poll_s: float = 0.5
    name: str | None = None
    """None: `default_audit_name(...)`."""
    retry_failed: frozenset[str] | None = None
    """Judge again the images whose latest verdict failed with these codes (empty: any code); None: never."""


AUDIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def default_audit_name(source: str, policy: str, non_violating: list[str]) -> str:
    """`<folder or file or prefix name>-<8 hex>`: stable for one (source, policy, codes), distinct otherwise."""
    where = source if "://" in source else str(Path(source).absolute())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", where.rstrip("/").rsplit("/", 1)[-1]).strip("-._")[:40] or "audit"
    digest = hashlib.sha256(json.dumps([where, policy, sorted(non_violating)]).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def checked_audit_name(name: str) -> str:
    if not AUDIT_NAME.fullmatch(name):
        raise ValueError(f"audit name {name[:80]!r}: 1-64 letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit")
    return name


def run_audit(settings: Settings, options: AuditOptions, *, log: TextIO = sys.stderr) -> AuditSummary:
    """Plan, enqueue and (unless `wait` is off) wait for every verdict; ValueError for a bad invocation.

    On KeyboardInterrupt the summary so far is attached to the exception as `summary`.
    """
    non_violating = _checked_policy(settings, options)
    s3 = s3_client(settings) if options.source.lower().startswith("s3://") or options.upload_to else None
    source = open_source(options.source, s3)
    placement = _placement(settings, options, s3)
    _check_buckets(settings, source, placement)
    if isinstance(source, FolderSource):
        _check_folder(source, placement)
    print(f"llavaguard audit: counting images in {options.source} ...", file=log, flush=True)
    total = count(_items(source))
    name = checked_audit_name(options.name or default_audit_name(options.source, options.policy, non_violating))
    summary = AuditSummary(options.source, options.policy, non_violating, name=name)
    with ModerationClient(settings=settings, queue=BULK_QUEUE) as client, Progress(
        total, enabled=options.progress
    ) as progress:
        try:
            _run(client, source, placement, summary, options, settings, progress)
        except KeyboardInterrupt as exc:
            exc.summary = summary  # type: ignore[attr-defined]
            raise
        finally:
            summary.pending = summary.images - summary.tally.judged
    return summary


def _run(
    client: ModerationClient, source: Source, placement: Placement | None, summary: AuditSummary,
    options: AuditOptions, settings: Settings, progress: Progress,
) -> None:
    def before(verdict: Verdict) -> None:
        summary.tally.add(verdict)
        progress.judged_before()

    def now(verdict: Verdict) -> None:
        summary.tally.add(verdict)
        progress.judged()

    broker = redis.Redis.from_url(settings.redis_url)
    queue = AuditQueue(broker, summary.name)
    batch_size = options.batch_size or settings.audit_batch_size
    waiter = Waiter(client, QueueProbe(broker), now, poll_s=options.poll_s)
    planner = Planner(client, queue, placement, summary, batch_size, on_verdict=before,
                      on_dropped=progress.dropped, retry_codes=options.retry_failed)
    planner.backlog = Backlog(queue.waiting_messages, batch_size, settings.audit_backlog,
                              on_pause=lambda: waiter.sweep(planner.outstanding), poll_s=min(options.poll_s, 0.2))
    planner.run(source)
    progress.note(enqueued=summary.enqueued, resumed=summary.resumed)
    if not options.wait:
        return
    waiter.wait(planner.outstanding, lambda lost: planner.republish(source, lost))
    if not waiter.pending:
        queue.prune(set(planner.outstanding))


def _check_folder(source: FolderSource, placement: Placement | None) -> None:
    """Fail once, up front, rather than reject every file of a folder the workers could not read."""
    hint = "put it under LLAVAGUARD_SHARED_ROOT, or pass --upload-to s3://bucket/prefix (README: Bulk audits)"
    if placement is None:
        raise ValueError(f"{source.root} is a folder: workers must be able to read its files; {hint}")
    if isinstance(placement, SharedRoot):
        placement.reference(AuditItem(str(source.root.absolute() / "probe"), local=True))  # ValueError if outside


def _check_buckets(settings: Settings, source: Source, placement: Placement | None) -> None:
    """Workers read only LLAVAGUARD_S3_ALLOWED_BUCKETS: refuse once, up front, an audit they could not judge."""
    buckets = [where.bucket for where in (source, placement) if isinstance(where, S3PrefixSource | S3Upload)]
    allowed = BucketAllowlist(settings.s3_allowed_buckets)
    for bucket in buckets:
        try:
            allowed.check(bucket)
        except ModerationFailed as exc:
            raise ValueError(f"{exc.message}: workers would refuse every image of this audit") from None


def _items(source: Source) -> Any:
    return (entry for entry in source if isinstance(entry, AuditItem))


def _checked_policy(settings: Settings, options: AuditOptions) -> list[str]:
    """The normalised non-violating codes; ValueError for an unknown policy or category."""
    try:
        PolicyRegistry(settings.policy_dir).text(options.policy)
    except ModerationFailed as exc:
        raise ValueError(exc.message) from None
    return normalise_codes(options.non_violating)


def _placement(settings: Settings, options: AuditOptions, s3: Any) -> Placement | None:
    if options.upload_to == UPLOAD_TO_STORE:
        if not settings.store_url.lower().startswith("s3://"):
            raise ValueError("--upload-to without a value needs an s3:// LLAVAGUARD_STORE_URL; name a bucket instead")
        bucket, prefix = parse_s3_prefix(settings.store_url)
        return S3Upload(bucket, f"{prefix.strip('/')}/images".lstrip("/"), s3)
    if options.upload_to:
        bucket, prefix = parse_s3_prefix(options.upload_to)
        return S3Upload(bucket, prefix, s3)
    if settings.shared_root is not None:
        return SharedRoot(settings.shared_root)
    return None
