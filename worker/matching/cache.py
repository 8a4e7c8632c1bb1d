"""The verdict cache (issue 12): an image judged before, under the same prompt and model, is not judged again.

Shared by every worker through Redis. Lookup (a `Matcher`, before inference): the same SHA-256 (`exact`), else
the nearest PDQ hash within `max_distance` bits (`pdq`, only when both hashes have quality >= 50), found
through a multi-index (`segments`) rather than a scan. Insert (a verdict hook, after the store): only a
verdict the model itself gave, completed, first stored. Never inserted: failed verdicts, verdicts answered
by a match (their answer is already in via the original; chaining near matches would let answers drift
further than `max_distance` from what the model saw), animations (a first frame is not the whole).

Everything is keyed by a scope, a hash of (prompt SHA-256, model name): another policy, a declared
non-violating category (which changes the prompt) or another model is another scope and never reuses an
old answer. The answer itself is read back from the verdict store by id, so the cache holds only hashes
and ids; an earlier verdict no longer in the store, or not `completed`, is no match.

Bounded: entries go into a generation of `ttl_s / 2` seconds; each generation's keys expire when the next one
ends, so an answer is reused for between ttl/2 and ttl after it was judged; a generation takes at most
`max_entries / 2` images. Redis keys (all under `llavaguard:match:`):
    n:{gen}                           counter of the generation's entries (entry ids)
    {scope}:{gen}:x                   hash: SHA-256 (32 bytes) -> verdict id
    {scope}:{gen}:e                   hash: entry id -> PDQ (32 bytes) + verdict id
    {scope}:{gen}:{segment}{value}    set of entry ids whose PDQ has this 16-bit value in this segment
A Redis failure never fails a moderation: it is logged and counted, and the image is judged (fail open).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import redis
import structlog

from worker.errors import StoreUnavailable
from worker.intake import PreparedImage
from worker.matching.base import MatchOutcome
from worker.matching.segments import probes, segment_values
from worker.models import ImageInfo, MatchInfo, ModerationRequest, Verdict
from worker.observability import metrics
from worker.stores import VerdictStore

log = structlog.get_logger(__name__)

KEY_PREFIX = "llavaguard:match:"
MIN_PDQ_QUALITY = 50
"""Below this a PDQ hash says little (flat, tiny or blurred images collide): exact matches only."""
MatchMode = Literal["off", "exact", "pdq"]
_PDQ_BYTES = 32


@dataclass(frozen=True)
class Found:
    kind: Literal["exact", "pdq"]
    distance: int
    verdict_id: str


class VerdictCache:
    """Matcher and verdict hook at once; thread-safe (redis-py pools its connections)."""

    def __init__(
        self, client: redis.Redis[bytes], store: VerdictStore, *, mode: MatchMode = "pdq", max_distance: int = 31,
        ttl_s: int = 30 * 24 * 3600, max_entries: int = 2_000_000, clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.mode = mode
        self.max_distance = max_distance
        self.period_s = max(ttl_s // 2, 1)
        self.max_per_generation = max(max_entries // 2, 1)
        self.clock = clock

    # ── lookup ──────────────────────────────────────────────────────────────────────────────────────────

    def match(
        self, request: ModerationRequest, image: PreparedImage, prompt_sha256: str, model: str
    ) -> MatchOutcome | None:
        if self.mode == "off" or image.info.sha256 is None:
            return None
        try:
            found = self.lookup(scope(prompt_sha256, model), image.info)
        except redis.RedisError as exc:
            log.warning("match.lookup_failed", error=str(exc))
            metrics.match_cache_skipped("lookup")
            return None
        if found is None:
            return None
        earlier = self._earlier(found.verdict_id, prompt_sha256, model)
        if earlier is None or earlier.rating is None or earlier.category is None:
            return None
        log.info("match.found", kind=found.kind, distance=found.distance, verdict_id=found.verdict_id)
        return MatchOutcome(
            match=MatchInfo(kind=found.kind, distance=found.distance, verdict_id=found.verdict_id),
            rating=earlier.rating, category=earlier.category, rationale=earlier.rationale, score=earlier.score,
            score_source=earlier.score_source, category_scores=earlier.category_scores,
        )

    def lookup(self, scope_id: str, info: ImageInfo) -> Found | None:
        """The exact match, else the nearest PDQ match within the distance, in the two live generations."""
        assert info.sha256 is not None
        gens = self._live_generations()
        near = self._near_enabled(info)
        pipe = self.client.pipeline(transaction=False)
        for gen in gens:
            pipe.hget(_key(scope_id, gen, "x"), bytes.fromhex(info.sha256))
        if near:
            buckets = [f"{segment:x}{value:04x}" for segment, value in probes(int(str(info.pdq), 16))]
            for gen in gens:
                pipe.sunion([_key(scope_id, gen, bucket) for bucket in buckets])
        replies = pipe.execute()
        for reply in replies[: len(gens)]:
            if reply is not None:
                return Found(kind="exact", distance=0, verdict_id=reply.decode())
        if not near:
            return None
        return self._nearest(scope_id, gens, replies[len(gens):], str(info.pdq))

    def _nearest(self, scope_id: str, gens: list[int], candidates: list[set[bytes]], pdq: str) -> Found | None:
        pipe = self.client.pipeline(transaction=False)
        asked = [(gen, sorted(ids)) for gen, ids in zip(gens, candidates, strict=True) if ids]
        if not asked:
            return None
        for gen, ids in asked:
            pipe.hmget(_key(scope_id, gen, "e"), ids)
        entries = [entry for values in pipe.execute() for entry in values if entry is not None]
        if not entries:
            return None
        stored = np.frombuffer(b"".join(entry[:_PDQ_BYTES] for entry in entries), dtype=np.uint8)
        query = np.frombuffer(bytes.fromhex(pdq), dtype=np.uint8)
        distances = np.bitwise_count(stored.reshape(-1, _PDQ_BYTES) ^ query).sum(axis=1)
        best = int(np.argmin(distances))
        if int(distances[best]) > self.max_distance:
            return None
        return Found(kind="pdq", distance=int(distances[best]), verdict_id=entries[best][_PDQ_BYTES:].decode())

    def _earlier(self, verdict_id: str, prompt_sha256: str, model: str) -> Verdict | None:
        """The earlier verdict, if it is still stored, completed, and was given under this prompt and model."""
        try:
            earlier = self.store.get(verdict_id)
        except StoreUnavailable as exc:
            log.warning("match.earlier_unreadable", verdict_id=verdict_id, error=str(exc))
            return None
        if earlier is None or earlier.status != "completed" or earlier.match is not None:
            return None
        if earlier.policy.sha256 != prompt_sha256 or earlier.model != model:
            return None
        return earlier

    # ── insert ──────────────────────────────────────────────────────────────────────────────────────────

    def remember(self, request: ModerationRequest, verdict: Verdict, first: bool) -> None:
        """Verdict hook: file a verdict the model gave under its scope; never raises (fail open)."""
        if not first or self.mode == "off" or not _is_original(verdict):
            return
        try:
            self.insert(verdict)
        except redis.RedisError as exc:
            log.warning("match.insert_failed", error=str(exc))
            metrics.match_cache_skipped("insert")

    def insert(self, verdict: Verdict) -> bool:
        """File one original verdict; False when this generation is full."""
        info, now = verdict.image, self.clock()
        gen = int(now // self.period_s)
        assert info.sha256 is not None and verdict.policy.sha256 is not None and verdict.model is not None
        scope_id = scope(verdict.policy.sha256, verdict.model)
        expires_in = max(1, int((gen + 2) * self.period_s - now))  # when the next generation ends
        counter = f"{KEY_PREFIX}n:{gen}"
        entry_id, _ = self.client.pipeline(transaction=False).incr(counter).expire(counter, expires_in).execute()
        if int(entry_id) > self.max_per_generation:
            metrics.match_cache_skipped("full")
            return False
        pipe = self.client.pipeline(transaction=False)
        near = bytes.fromhex(str(info.pdq)) if self._near_enabled(info) else None
        queue_entry(pipe, scope_id, gen, int(entry_id), bytes.fromhex(info.sha256), near, verdict.id, expires_in)
        pipe.execute()
        return True

    # ── helpers ─────────────────────────────────────────────────────────────────────────────────────────

    def _near_enabled(self, info: ImageInfo) -> bool:
        return self.mode == "pdq" and info.pdq is not None and (info.pdq_quality or 0) >= MIN_PDQ_QUALITY

    def _generation(self) -> int:
        return int(self.clock() // self.period_s)

    def _live_generations(self) -> list[int]:
        gen = self._generation()
        return [gen, gen - 1]


def scope(prompt_sha256: str, model: str) -> str:
    """16 hex characters naming (prompt, model): short keys, and nothing a client chose in a key."""
    return hashlib.sha256(f"{prompt_sha256}\n{model}".encode()).hexdigest()[:16]


def queue_entry(
    pipe: redis.client.Pipeline[bytes], scope_id: str, gen: int, entry_id: int, sha256: bytes, pdq: bytes | None,
    verdict_id: str, expires_in: int | None,
) -> None:
    """Queue the commands filing one entry (the exact index, and the PDQ index when `pdq` is given); the
    benchmark fills Redis through this too, so that it measures the real layout."""
    touched = [_key(scope_id, gen, "x")]
    pipe.hsetnx(touched[0], sha256, verdict_id)
    if pdq is not None:
        touched.append(_key(scope_id, gen, "e"))
        pipe.hset(touched[1], str(entry_id), pdq + verdict_id.encode())
        for segment, value in enumerate(segment_values(int.from_bytes(pdq, "big"))):
            touched.append(_key(scope_id, gen, f"{segment:x}{value:04x}"))
            pipe.sadd(touched[-1], entry_id)
    if expires_in is not None:
        for key in touched:
            pipe.expire(key, expires_in)


def _key(scope_id: str, gen: int, suffix: str) -> str:
    return f"{KEY_PREFIX}{scope_id}:{gen}:{suffix}"


def _is_original(verdict: Verdict) -> bool:
    """A verdict the model gave for a still image: the only kind whose answer may be reused."""
    return (
        verdict.status == "completed" and verdict.match is None and verdict.frames is None
        and verdict.model is not None and verdict.policy.sha256 is not None and verdict.image.sha256 is not None
    )
