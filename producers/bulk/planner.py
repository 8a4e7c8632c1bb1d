"""Plan an audit: find the images that still need a verdict and enqueue exactly those, many per message.

Resumability rests on one rule: an image's moderation id is derived from (policy name, sorted non-violating
codes, image reference) with the deployment's id secret (`producers.ids`: unguessable, stable while Redis
keeps the secret), so every run of the same audit maps an image to the same id. For each chunk of the
source, ids with a stored verdict are skipped (`store.get_many`), ids whose enqueued marker exists are left
to the message already queued (an interrupted run's work is not published twice), and only the rest is
published, as one `moderate_batch` message on the `bulk` queue. Ctrl-C is held back while a message is
being marked and published, so an interrupt never leaves a marker without its message or the reverse.
A hard kill (SIGKILL, power loss) can: `waiting.py` finds such orphaned markers and `stale` re-enqueues them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from types import FrameType

from producers.bulk.placement import Placement
from producers.bulk.sources import AuditItem, Entry, Rejected
from producers.bulk.summary import AuditSummary
from producers.client import ModerationClient
from producers.ids import audit_moderation_id
from producers.references import check_image_url
from worker.models import ImageRef, ModerationRequest, Verdict

__all__ = ["Planned", "Planner", "audit_moderation_id", "deferred_interrupts"]


@dataclass(frozen=True)
class Planned:
    id: str
    reference: str
    item: AuditItem


@dataclass
class Planner:
    """Walks a source once, enqueueing what needs judging; `outstanding` lists every id still awaited."""

    client: ModerationClient
    placement: Placement | None
    summary: AuditSummary
    batch_size: int = 64
    on_verdict: Callable[[Verdict], None] = lambda _: None
    on_dropped: Callable[[], None] = lambda: None
    """Called when an entry counted for the progress bar turns out not to be an image to wait for."""
    outstanding: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _unplaced: dict[str, str] = field(default_factory=dict)

    def run(self, source: Iterable[Entry]) -> None:
        """Plan every entry of the source: skip what is judged or queued, enqueue the rest."""
        self._seen.clear()
        for chunk in _chunks(iter(source), self.batch_size):
            self._plan(self._resolve(chunk))

    def republish(self, source: Iterable[Entry], lost: set[str]) -> int:
        """Enqueue again the `lost` ids (marked enqueued, but in no queue) still without a verdict."""
        self._seen.clear()
        count = 0
        for chunk in _chunks(iter(source), self.batch_size):
            planned = [p for p in self._resolve(chunk, counting=False) if p.id in lost]
            judged = self.client.store.get_many([p.id for p in planned]) if planned else {}
            again = [p for p in planned if p.id not in judged]
            self.client.forget_submitted(p.id for p in again)
            count += self._enqueue(again)
        self.summary.republished += count
        return count

    def _plan(self, planned: list[Planned]) -> None:
        if not planned:
            return
        verdicts = self.client.store.get_many([p.id for p in planned])
        self.summary.judged_before += len(verdicts)
        for verdict in verdicts.values():
            self.on_verdict(verdict)
        waiting = [p for p in planned if p.id not in verdicts]
        queued = self.client.submitted(p.id for p in waiting)
        self.summary.resumed += len(queued)
        self.outstanding.extend(p.id for p in waiting if p.id in queued)
        fresh = [p for p in waiting if p.id not in queued]
        self.summary.enqueued += self._enqueue(fresh)
        self.outstanding.extend(p.id for p in fresh if p.item.image not in self._unplaced)

    def _resolve(self, chunk: list[Entry], *, counting: bool = True) -> list[Planned]:
        """References and ids of the chunk's images; rejections recorded, repeats of an image dropped."""
        planned = []
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
            moderation_id = audit_moderation_id(self.client.id_secret(), self.summary.policy,
                                                self.summary.non_violating, reference)
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
            return check_image_url(item.image, s3_allowed_buckets=self.client.settings.s3_allowed_buckets,
                                   allow_http=self.client.settings.allow_http)
        if self.placement is None:
            raise ValueError("a local file needs --upload-to or LLAVAGUARD_SHARED_ROOT")
        return self.placement.reference(item)

    def _enqueue(self, fresh: list[Planned]) -> int:
        """Place local files, then publish one batch message; how many ids this call enqueued."""
        local = [p.item for p in fresh if p.item.local]
        self._unplaced = self.placement.place(local) if local and self.placement else {}
        for planned in fresh:
            if planned.item.image in self._unplaced:
                self.summary.images -= 1
                self._reject(Rejected(planned.item.image, self._unplaced[planned.item.image]))
        requests = [self._request(p) for p in fresh if p.item.image not in self._unplaced]
        with deferred_interrupts():
            return len(self.client.enqueue_batch(requests))

    def _request(self, planned: Planned) -> ModerationRequest:
        return ModerationRequest(
            id=planned.id, image=ImageRef(url=planned.reference), policy=self.summary.policy,
            non_violating=self.summary.non_violating, metadata=planned.item.metadata,
        )

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
