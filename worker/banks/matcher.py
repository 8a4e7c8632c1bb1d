"""The bank `Matcher` (worker/matching/base.py): an image listed in an operator's bank is decided by the bank.

Each worker process holds every bank in memory (exact hashes in a dict, PDQ hashes in a `PdqIndex`) and
reloads a bank only when its version in Redis changed, looked at most every `refresh_s`: a lookup costs no
Redis round trip and no scan. Precedence when several banks match: an exact hash (SHA-256, MD5 of the
original bytes) before a PDQ near match; then block before allow (conflicting banks are an operator's
mistake, and blocking is the safe side); then the smaller distance, then the bank name. Like every matcher
it fails open: if Redis cannot be read it keeps the banks it has (or none) and the model judges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import structlog

from worker.banks.entries import BankConfig, HashType
from worker.banks.index import PdqIndex
from worker.banks.store import BankStore
from worker.categories import NONE_APPLYING
from worker.intake import PreparedImage
from worker.matching.base import MatchOutcome
from worker.models import MatchInfo, ModerationRequest
from worker.observability import metrics

log = structlog.get_logger(__name__)

MIN_PDQ_QUALITY = 50
"""Below this PDQ quality (flat or tiny images) a near match says little: ThreatExchange's floor."""
SCORE_SOURCE = "bank_match"


@dataclass
class _Bank:
    config: BankConfig
    version: int
    exact: dict[str, str] = field(default_factory=dict)
    """"sha256:<hex>" / "md5:<hex>" -> entry id."""
    pdq: PdqIndex = field(default_factory=PdqIndex)


@dataclass(frozen=True)
class BankHit:
    bank: BankConfig
    hash_type: HashType
    value: str
    entry_id: str
    distance: int

    def rank(self) -> tuple[int, int, int, str]:
        return (self.hash_type == "pdq", self.bank.action != "block", self.distance, self.bank.name)


class BankMatcher:
    """Thread-safe; one per worker process (built in worker/composition.py)."""

    def __init__(self, store: BankStore, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.clock = clock
        self._banks: dict[str, _Bank] = {}
        self._checked_at: float | None = None
        self._loaded = False
        self._refreshing = threading.Lock()

    def match(
        self, request: ModerationRequest, image: PreparedImage, prompt_sha256: str, model: str
    ) -> MatchOutcome | None:
        hit = self.lookup(image.info.sha256, image.md5, image.info.pdq, image.info.pdq_quality)
        if hit is None:
            return None
        metrics.bank_matched(hit.bank.action, hit.hash_type)
        log.info("bank.matched", bank=hit.bank.name, action=hit.bank.action, hash_type=hit.hash_type,
                 distance=hit.distance)
        return outcome_for(hit)

    def lookup(self, sha256: str | None, md5: str | None, pdq: str | None, pdq_quality: int | None
               ) -> BankHit | None:
        """The best hit among all banks (module docstring's precedence), or None."""
        banks = self._current()
        hits: list[BankHit] = []
        for bank in banks:
            for hash_type, value in (("sha256", sha256), ("md5", md5)):
                if value is not None and (entry := bank.exact.get(f"{hash_type}:{value}")) is not None:
                    hits.append(BankHit(bank.config, hash_type, value, entry, 0))  # type: ignore[arg-type]
            if pdq is not None and (pdq_quality or 0) >= MIN_PDQ_QUALITY and len(bank.pdq):
                near = bank.pdq.nearest(pdq, bank.config.pdq_distance)
                if near is not None:
                    hits.append(BankHit(bank.config, "pdq", near[0], near[1], near[2]))
        return min(hits, key=BankHit.rank, default=None)

    def _current(self) -> list[_Bank]:
        """The banks as of at most `refresh_s` ago; reloads only the banks whose version changed.

        One thread reloads while the others go on with the copy they have (a large bank takes seconds to
        index); only the very first load is waited for, so a new worker never skips its banks."""
        if self._due() and self._refreshing.acquire(blocking=not self._loaded):
            try:
                if self._due():
                    self._checked_at = self.clock()
                    self._refresh_or_keep()
            finally:
                self._loaded = True
                self._refreshing.release()
        return list(self._banks.values())

    def _due(self) -> bool:
        return self._checked_at is None or self.clock() - self._checked_at >= self.refresh_s

    def _refresh_or_keep(self) -> None:
        try:
            self._banks = self._refreshed()
        except (redis.RedisError, ValueError) as exc:
            metrics.BANK_REFRESH_FAILURES.inc()
            log.warning("bank.refresh_failed", error=str(exc)[:200], kept=len(self._banks))

    def _refreshed(self) -> dict[str, _Bank]:
        """A new map of the banks (swapped in whole: readers never see one half-built)."""
        versions = self.store.versions()
        banks: dict[str, _Bank] = {}
        for config in self.store.configs():
            version = versions.get(config.name, 0)
            held = self._banks.get(config.name)
            fresh = held is not None and held.version == version and held.config == config
            banks[config.name] = held if fresh and held is not None else self._load(config, version)
        return banks

    def _load(self, config: BankConfig, version: int) -> _Bank:
        bank = _Bank(config, version)
        for entry in self.store.entries(config.name):
            if entry.hash_type == "pdq":
                bank.pdq.add(entry.value, entry.entry_id)
            else:
                bank.exact[entry.key] = entry.entry_id
        log.info("bank.loaded", bank=config.name, version=version, pdq=len(bank.pdq), exact=len(bank.exact))
        return bank


def outcome_for(hit: BankHit) -> MatchOutcome:
    """What the bank decides: block = Unsafe in the bank's category, allow = Safe; no score (no model)."""
    entry = hit.entry_id or f"{hit.hash_type}:{hit.value}"
    how = "exactly" if hit.hash_type != "pdq" else f"at PDQ distance {hit.distance}"
    rationale = (f"Matched entry {entry} of the {hit.bank.action} bank {hit.bank.name!r} "
                 f"({hit.hash_type}, {how}); the bank decided, no model was asked.")
    match = MatchInfo(kind="bank", bank=hit.bank.name, entry=entry, distance=hit.distance)
    if hit.bank.action == "block" and hit.bank.category is not None:
        return MatchOutcome(match=match, rating="Unsafe", category=hit.bank.category, rationale=rationale,
                            score_source=SCORE_SOURCE, decision="block")
    return MatchOutcome(match=match, rating="Safe", category=NONE_APPLYING, rationale=rationale,
                        score_source=SCORE_SOURCE, decision="allow")
