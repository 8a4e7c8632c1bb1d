"""Banks in Redis, shared by every worker on every host: configs, entries and a version per bank.

    llavaguard:banks                  HASH  name -> JSON config (action, category, pdq_distance)
    llavaguard:banks:versions         HASH  name -> counter, bumped by every change to the bank
    llavaguard:bank:<name>:entries    HASH  "<hash type>:<hex>" -> the operator's entry id (or "")

Entries are keyed by their hash, so importing a file twice stores nothing new; a bank holds at most
`max_entries` (an import that would pass it is refused whole, nothing written). Workers never scan these
keys per image: they reload a bank when its version changes (worker/banks/matcher.py). This module is the
only one that knows the key layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import redis

from worker.banks.entries import BankConfig, Entry, make_entry

BANKS_KEY = "llavaguard:banks"
VERSIONS_KEY = "llavaguard:banks:versions"
ENTRIES_KEY = "llavaguard:bank:{name}:entries"
MAX_BANKS = 100
"""Banks are few (each worker holds all of them in memory); a typo loop must not create thousands."""
_CHUNK = 1000


class BankError(ValueError):
    """An operator's request the banks cannot honour (unknown bank, bank full, name taken)."""


class BankStore:
    def __init__(self, client: redis.Redis[bytes], max_entries: int) -> None:
        self.redis = client
        self.max_entries = max_entries

    # ── banks ──

    def create(self, config: BankConfig) -> None:
        """A new bank; BankError if the name is taken or MAX_BANKS exist."""
        if self.redis.hlen(BANKS_KEY) >= MAX_BANKS:
            raise BankError(f"there are already {MAX_BANKS} banks; remove one first")
        if not self.redis.hsetnx(BANKS_KEY, config.name, json.dumps(config.to_json())):
            raise BankError(f"bank {config.name!r} exists")
        self.redis.hincrby(VERSIONS_KEY, config.name, 1)

    def get(self, name: str) -> BankConfig | None:
        raw = self.redis.hget(BANKS_KEY, name)
        return None if raw is None else BankConfig.from_json(name, json.loads(raw))

    def require(self, name: str) -> BankConfig:
        config = self.get(name)
        if config is None:
            raise BankError(f"no bank {name!r} (llavaguard banks list)")
        return config

    def configs(self) -> list[BankConfig]:
        raw = self.redis.hgetall(BANKS_KEY)
        return sorted((BankConfig.from_json(k.decode(), json.loads(v)) for k, v in raw.items()),
                      key=lambda c: c.name)

    def versions(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(VERSIONS_KEY).items()}

    def count(self, name: str) -> int:
        return int(self.redis.hlen(_entries(name)))

    def remove(self, name: str) -> None:
        self.require(name)
        with self.redis.pipeline() as pipe:
            pipe.delete(_entries(name)).hdel(BANKS_KEY, name).hincrby(VERSIONS_KEY, name, 1).execute()

    # ── entries ──

    def add(self, name: str, entries: Sequence[Entry]) -> int:
        """Store `entries` in bank `name`; returns how many were new. Refused whole past `max_entries`."""
        self.require(name)
        unique = {e.key: e for e in entries}
        new = self._new_keys(name, list(unique))
        if self.count(name) + len(new) > self.max_entries:
            raise BankError(f"bank {name!r} would hold more than {self.max_entries} entries "
                            "(LLAVAGUARD_BANK_MAX_ENTRIES); nothing imported")
        keys = list(unique)
        for start in range(0, len(keys), _CHUNK):
            chunk = {key: unique[key].entry_id for key in keys[start:start + _CHUNK]}
            self.redis.hset(_entries(name), mapping=chunk)  # type: ignore[arg-type]
        self.redis.hincrby(VERSIONS_KEY, name, 1)
        return len(new)

    def discard(self, name: str, hash_value: str) -> int:
        """Remove the entries with this hash (of any type); returns how many there were."""
        self.require(name)
        value = hash_value.strip().lower()
        removed = int(self.redis.hdel(_entries(name), *(f"{kind}:{value}" for kind in ("pdq", "sha256", "md5"))))
        if removed:
            self.redis.hincrby(VERSIONS_KEY, name, 1)
        return removed

    def entries(self, name: str) -> Iterator[Entry]:
        """Every entry, read in pages (HSCAN): a large bank is never one reply."""
        for key, entry_id in self.redis.hscan_iter(_entries(name), count=_CHUNK):
            hash_type, _, value = key.decode().partition(":")
            yield make_entry(hash_type, value, entry_id.decode())

    def _new_keys(self, name: str, keys: list[str]) -> list[str]:
        new: list[str] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            found = self.redis.hmget(_entries(name), chunk)
            new.extend(key for key, value in zip(chunk, found, strict=True) if value is None)
        return new


def _entries(name: str) -> str:
    return ENTRIES_KEY.format(name=name)
