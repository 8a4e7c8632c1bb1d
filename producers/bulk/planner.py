"""Plan an audit: find the images that still need a verdict and enqueue exactly those, many per message.

Resumability rests on one rule: an image's moderation id is derived from (policy name, sorted non-violating
codes, image reference) with the deployment's id secret (`producers.ids`: unguessable, stable while Redis
keeps the secret), so every run of the same audit maps an image to the same id. For each chunk of the
source, ids with a stored verdict are skipped (`store.get_many`), ids in the audit's queued record
(`queued.py`, read once per run before any verdict) are left to the message already queued (an interrupted
run's work is not published twice), and only the rest is published, as one compact `moderate_batch`
message on the `bulk` queue, once the bounded backlog (`backlog.py`) has room. Ctrl-C is held back while a
batch is being recorded and published, so an interrupt never leaves a record without its message or the
reverse. A hard kill (SIGKILL, power loss) can: `waiting.py` finds such orphaned records and `republish`
enqueues their images again.

Failed verdicts are final unless the audit runs with `--retry-failed`: then an image whose latest verdict
failed (with one of the given codes, or any) is enqueued again under `retry_moderation_id(failed id)`, with
`metadata.retry_of` naming the failed verdict. Every run follows each image's chain of retries to its latest
id (stored, or recorded as queued), so a retry is resumable like the audit, a completed image is never judged
again, and the summary counts each image by its latest verdict.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from types import FrameType

from producers.bulk.backlog import Backlog
from producers.bulk.placement import Placement
from producers.bulk.queued import AuditQueue, Item
from producers.bulk.sources import AuditItem, Entry, Rejected
from producers.bulk.summary import AuditSummary
from producers.client import ModerationClient
from producers.ids import audit_id_maker, audit_moderation_id, retry_moderation_id
from producers.references import MAX_URL_LENGTH, check_image_url
from worker.models import Verdict, utcnow

READ_BATCHES = 8
"""Batches planned per store read: one `get_many` of 512 ids costs about what one of 64 does."""

__all__ = ["Planned", "Planner", "audit_moderation_id", "deferred_interrupts"]


@dataclass(frozen=True)
class Planned:
    id: str
    reference: str
    item: AuditItem
    retry_of: str | None = None
    """The failed verdict this id judges again (None: the image's first id)."""


@dataclass
class Planner:
    """Walks a source once, enqueueing what needs judging; `outstanding` lists every id still awaited."""

    client: ModerationClient
    queue: AuditQueue
    placement: Placement | None
    summary: AuditSummary
    batch_size: int = 64
    on_verdict: Callable[[Verdict], None] = lambda _: None
    on_dropped: Callable[[], None] = lambda: None
    """Called when an entry counted for the progress bar turns out not to be an image to wait for."""
    retry_codes: frozenset[str] | None = None
    """Judge again images whose latest verdict failed with one of these codes (empty: any); None: never."""
    backlog: Backlog | None = None
    """None: no bound (everything is published as fast as it is planned)."""
    outstanding: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _unplaced: dict[str, str] = field(default_factory=dict)
    _queued: set[str] = field(default_factory=set)
    _make_id: Callable[[str], str] | None = None
    _good_heads: set[str] = field(default_factory=set)

    def run(self, source: Iterable[Entry]) -> None:
        """Plan every entry of the source: skip what is judged or queued, enqueue the rest."""
        self._seen.clear()
        self._queued = self.queue.queued()  # before any verdict is read: see queued.py
        try:
            for chunk in _chunks(iter(source), self.batch_size * READ_BATCHES):
                self._plan(self._resolve(chunk))
        finally:  # Ctrl-C included: what was planned goes out, each batch whole
            with deferred_interrupts():
                self.queue.flush()

    def republish(self, source: Iterable[Entry], lost: set[str]) -> int:
        """Enqueue again the `lost` ids (recorded as queued, but in no queue) still without a verdict."""
        self._seen.clear()
        self.queue.forget(lost)
        self._queued = self.queue.queued()
        count = 0
        for chunk in _chunks(iter(source), self.batch_size * READ_BATCHES):
            resolved = self._resolve(chunk, counting=False)
            latest = self._latest(resolved) if resolved else []
            count += self._enqueue([p for p, verdict in latest if p.id in lost and verdict is None])
        with deferred_interrupts():
            self.queue.flush()
        self.summary.republished += count
        return count

    def _plan(self, planned: list[Planned]) -> None:
        if not planned:
            return
        waiting, retries = [], []
        for current, verdict in self._latest(planned):
            if verdict is None:
                waiting.append(current)
            elif self._retried(verdict):
                retries.append(replace(current, id=retry_moderation_id(self.client.id_secret(), verdict.id),
                                       retry_of=verdict.id))
            else:
                self.summary.judged_before += 1
                self.on_verdict(verdict)
        self.summary.retried += len(retries)
        waiting += retries
        queued = {p.id for p in waiting if p.id in self._queued}
        self.summary.resumed += len(queued)
        self.outstanding.extend(p.id for p in waiting if p.id in queued)
        fresh = [p for p in waiting if p.id not in queued]
        self.summary.enqueued += self._enqueue(fresh)
        self.outstanding.extend(p.id for p in fresh if p.item.image not in self._unplaced)

    def _retried(self, verdict: Verdict) -> bool:
        if self.retry_codes is None or verdict.status != "failed" or verdict.error is None:
            return False
        return not self.retry_codes or verdict.error.code in self.retry_codes

    def _latest(self, planned: list[Planned]) -> list[tuple[Planned, Verdict | None]]:
        """Each image at the newest id of its retry chain, with that id's verdict (None: not judged yet).

        A failed verdict's retry id counts once it is stored or recorded as queued: one `get_many` per chain
        level, and chains are one level deep unless retried.
        """
        latest: list[tuple[Planned, Verdict | None]] = []
        level, verdicts = planned, self.client.store.get_many([p.id for p in planned])
        while level:
            failed = [p for p in level if (v := verdicts.get(p.id)) is not None and v.status == "failed"]
            failed_ids = {p.id for p in failed}
            latest += [(p, verdicts.get(p.id)) for p in level if p.id not in failed_ids]
            if not failed:
                break
            secret = self.client.id_secret()
            retries = [replace(p, id=retry_moderation_id(secret, p.id), retry_of=p.id) for p in failed]
            stored = self.client.store.get_many([r.id for r in retries])
            queued = {r.id for r in retries if r.id not in stored and r.id in self._queued}
            level = [r for r in retries if r.id in stored or r.id in queued]
            latest += [(p, verdicts[p.id]) for p, r in zip(failed, retries, strict=True)
                       if r.id not in stored and r.id not in queued]
            verdicts = stored
        return latest

    def _resolve(self, chunk: list[Entry], *, counting: bool = True) -> list[Planned]:
        """References and ids of the chunk's images; rejections recorded, repeats of an image dropped."""
        planned = []
        make_id = self._id_maker()
        for entry in chunk:
            if isinstance(entry, Rejected):
                if counting:
                    self.summary.rejected.append(entry)
                continue
            try:
                reference = self._reference(entry)
            except ValueError as exc:
                if counting:
                    self._reject(Rejected(entry.image, str(exc)))
                continue
            moderation_id = make_id(reference)
            if moderation_id in self._seen:
                if counting:
                    self.on_dropped()
                continue
            self._seen.add(moderation_id)
            planned.append(Planned(moderation_id, reference, entry))
        if counting:
            self.summary.images += len(planned)
        return planned

    def _reference(self, item: AuditItem) -> str:
        if not item.local:
            return self._checked_url(item.image)
        if self.placement is None:
            raise ValueError("a local file needs --upload-to or LLAVAGUARD_SHARED_ROOT")
        return self.placement.reference(item)

    def _checked_url(self, url: str) -> str:
        """`check_image_url`, whose verdict on an http(s) URL depends only on its scheme and host: checked once
        per `scheme://host/` (a manifest names millions of images on a few hosts)."""
        head = url[:url.find("/", url.find("://") + 3) + 1] if url[:4].lower() == "http" else ""
        if head.endswith("/") and head in self._good_heads and len(url) <= MAX_URL_LENGTH:
            return url
        checked = check_image_url(url, s3_allowed_buckets=self.client.settings.s3_allowed_buckets,
                                  allow_http=self.client.settings.allow_http)
        if head.endswith("/") and len(self._good_heads) < 1000:
            self._good_heads.add(head)
        return checked

    def _enqueue(self, fresh: list[Planned]) -> int:
        """Place local files, then publish them `batch_size` per message; how many ids this call enqueued."""
        local = [p.item for p in fresh if p.item.local]
        self._unplaced = self.placement.place(local) if local and self.placement else {}
        for planned in fresh:
            if planned.item.image in self._unplaced:
                self.summary.images -= 1
                self._reject(Rejected(planned.item.image, self._unplaced[planned.item.image]))
        items = [self._item(p) for p in fresh if p.item.image not in self._unplaced]
        if not items:
            return 0
        shared = self._shared()
        for start in range(0, len(items), self.batch_size):
            if self.backlog is not None:
                self.backlog.wait_for_room()
            with deferred_interrupts():
                self.queue.publish(shared, items[start:start + self.batch_size])
        return len(items)

    def _shared(self) -> dict[str, object]:
        """What every request of the audit shares, said once per batch message."""
        shared: dict[str, object] = {"policy": self.summary.policy, "created_at": utcnow().isoformat()}
        if self.summary.non_violating:
            shared["non_violating"] = self.summary.non_violating
        if self.summary.name:
            shared["audit"] = self.summary.name
        return shared

    def _item(self, planned: Planned) -> Item:
        metadata = planned.item.metadata
        if planned.retry_of is not None:
            metadata = {**metadata, "retry_of": planned.retry_of}
        return Item(planned.id, planned.reference, metadata)

    def _id_maker(self) -> Callable[[str], str]:
        if self._make_id is None:
            self._make_id = audit_id_maker(self.client.id_secret(), self.summary.policy, self.summary.non_violating)
        return self._make_id

    def _reject(self, rejected: Rejected) -> None:
        self.summary.rejected.append(rejected)
        self.on_dropped()


def _chunks(entries: Iterator[Entry], size: int) -> Iterator[list[Entry]]:
    while chunk := list(islice(entries, size)):
        yield chunk


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT until the block ends, then raise KeyboardInterrupt: marking and publishing stay together."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
