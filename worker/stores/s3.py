"""The verdict store on S3 (or an S3-compatible server), laid out for readers (`s3_layout.py`, README).

Each verdict is one JSON object at `<prefix>/verdicts/by-id/<id>.json` (get by id: one GET) and a copy in its
day's Hive partition, `<prefix>/verdicts/dt=YYYY-MM-DD/`, whose key name carries the completion time, id,
status, rating, category and audit: `list` lists key names and reads only the verdicts it returns.

Saving is a conditional write (`If-None-Match: *`) of the by-id object, so S3 itself refuses a second object
for an id: exactly one racing save wins, and only the winner writes the partition copy. A save that loses
makes sure the winner's partition copy exists (writing it from the stored body if the winner died between
its two writes), so a redelivered task repairs what a crash left half-written. Servers without conditional
writes answer 501 and the store falls back to head-then-put, which has a race (two saves may both see
"absent" and the later put overwrites the earlier); pass `conditional_writes=False` to choose that fallback
up front. This module never creates or deletes buckets or objects it did not write.

`record_review` (issue 11) rewrites both objects of one verdict in place (the by-id object first, the system
of record): the partition key name holds only fields a review never changes.

Objects of the earlier layout (`<prefix>/verdicts/<id>.json`) keep working: `get` falls back to them, `list`
and `count` include them (reading each: they have no key name to select by), and `save` refuses an id one of
them already holds. Whether such objects exist is asked once per store object (one LIST).
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker.errors import StoreUnavailable
from worker.models import Decision, ReviewInfo, Verdict
from worker.stores.base import VerdictQuery, reviewed, unique_ids
from worker.stores.s3_layout import BY_ID, Entry, entry_key, id_key, legacy_key, parse_entry, start_after

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_ALREADY_EXISTS = frozenset({"412", "PreconditionFailed"})
_CONCURRENT_CONDITIONAL = frozenset({"409", "ConditionalRequestConflict"})
_NOT_IMPLEMENTED = frozenset({"501", "NotImplemented"})
_CONFLICT_RETRIES = 5
_CONFLICT_BACKOFF_S = 0.05
_READ_THREADS = 8
"""Parallel GETs for `get_many` and `list`; below botocore's default pool of 10 connections."""


def verdicts_root(prefix: str) -> str:
    """`"a/b/"` -> `"a/b/verdicts/"`, `""` -> `"verdicts/"`: never a leading slash or an empty segment."""
    parts = [part for part in prefix.split("/") if part]
    return "/".join([*parts, "verdicts", ""])


class S3VerdictStore:
    """Verdicts in `bucket` under `prefix`; the bucket must exist. Closing the store closes `client`
    unless `owns_client=False`."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        conditional_writes: bool = True,
        owns_client: bool = True,
    ) -> None:
        self.bucket = bucket
        self.root = verdicts_root(prefix)
        self._client = client
        self._conditional_writes = conditional_writes
        self._owns_client = owns_client
        self._legacy: bool | None = None

    def __repr__(self) -> str:
        return f"S3VerdictStore(bucket={self.bucket!r}, root={self.root!r})"

    def key(self, id: str) -> str:
        """The id-addressed object of a verdict (what `get` reads)."""
        return id_key(self.root, id)

    def save(self, verdict: Verdict) -> bool:
        body = verdict.model_dump_json().encode()
        with _unavailable_on_failure("saving a verdict"):
            if self._has_legacy() and self._exists(legacy_key(self.root, verdict.id)):
                return False
            if self._write_once(self.key(verdict.id), body):
                self._write_once(entry_key(self.root, verdict), body)
                return True
            stored = self._read(self.key(verdict.id))
            if stored is not None:  # the winner may have died before writing its partition copy
                self._write_once(entry_key(self.root, stored), stored.model_dump_json().encode())
            return False

    def get(self, id: str) -> Verdict | None:
        with _unavailable_on_failure("reading a verdict"):
            found = self._read(self.key(id))
            if found is None and self._has_legacy():
                found = self._read(legacy_key(self.root, id))
            return found

    def get_many(self, ids: Iterable[str]) -> dict[str, Verdict]:
        wanted = unique_ids(ids)
        with _unavailable_on_failure("reading verdicts"):
            found = {verdict.id: verdict for verdict in self._read_all(self.key(id) for id in wanted)}
            if self._has_legacy():
                missing = [legacy_key(self.root, id) for id in wanted if id not in found]
                found.update((verdict.id, verdict) for verdict in self._read_all(missing))
        return found

    def list(self, query: VerdictQuery) -> builtins.list[Verdict]:
        if query.limit == 0:
            return []
        with _unavailable_on_failure("listing verdicts"):
            entries = self._select(query)
            verdicts = self._read_all(entry.key for entry in entries)
            legacy_keys = self._legacy_keys() if self._has_legacy() else iter(())
            legacy = [v for v in self._read_all(legacy_keys) if query.matches(v)]
            return query.apply([*verdicts, *legacy])

    def count(self) -> int:
        with _unavailable_on_failure("counting verdicts"):
            legacy = sum(1 for _ in self._legacy_keys()) if self._has_legacy() else 0
            return sum(1 for _ in self._keys(self.root + BY_ID)) + legacy

    def record_review(self, id: str, review: ReviewInfo, decision: Decision) -> Verdict | None:
        with _unavailable_on_failure("recording a review"):
            key = self.key(id)
            stored = self._read(key)
            if stored is None and self._has_legacy():
                key = legacy_key(self.root, id)
                stored = self._read(key)
            if stored is None:
                return None
            verdict = reviewed(stored, review, decision)
            body = verdict.model_dump_json().encode()
            copies = [key, entry_key(self.root, verdict)] if key == self.key(id) else [key]  # legacy: no partition
            for target in copies:
                self._client.put_object(Bucket=self.bucket, Key=target, Body=body, ContentType="application/json")
            if key == self.key(id) and stored.decision != verdict.decision:
                # The partition entry's name carries the decision: the one named for the model-time decision goes.
                self._client.delete_object(Bucket=self.bucket, Key=entry_key(self.root, stored))
            return verdict

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _write_once(self, key: str, body: bytes) -> bool:
        """Write `key` unless it exists; True if this call wrote it."""
        if self._conditional_writes:
            return self._put_if_none_match(key, body)
        return self._head_then_put(key, body)

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND:
                raise
            return False

    def _select(self, query: VerdictQuery) -> builtins.list[Entry]:
        """The partition entries `query` selects, from key names alone, walking forward from `since`.

        With a limit, the walk stops at the first entry later than the limit-th match (entries of one
        instant are not in id order, so the ties of the last instant are all collected before cutting).
        """
        options = {"StartAfter": start_after(self.root, query.since)} if query.since is not None else {}
        selected: builtins.list[Entry] = []
        for key in self._keys(self.root + "dt=", **options):
            entry = parse_entry(self.root, key)
            if entry is None:
                continue
            if query.until is not None and entry.completed_at >= query.until:
                break
            full = query.limit is not None and len(selected) >= query.limit
            if full and entry.completed_at > selected[-1].completed_at:
                break
            if entry.matches(query):
                selected.append(entry)
        selected.sort(key=lambda entry: entry.order)
        return selected if query.limit is None else selected[: query.limit]

    def _has_legacy(self) -> bool:
        """Whether objects of the earlier layout exist (asked once: one LIST of the root's own level)."""
        if self._legacy is None:
            self._legacy = next(iter(self._legacy_keys()), None) is not None
        return self._legacy

    def _legacy_keys(self) -> Iterator[str]:
        """`<root><id>.json`: the objects directly under the root (the new layout lives in sub-prefixes)."""
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.root, Delimiter="/"):
            for item in page.get("Contents", []):
                key = item.get("Key", "")
                if key.endswith(".json"):
                    yield key

    def _put_if_none_match(self, key: str, body: bytes) -> bool:
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*"
                )
                return True
            except ClientError as exc:
                code = _error_code(exc)
                if code in _ALREADY_EXISTS:
                    return False
                if code in _NOT_IMPLEMENTED:
                    return self._fall_back_to_head_then_put(key, body)
                if code not in _CONCURRENT_CONDITIONAL:
                    raise
            # Another conditional write on this key is in flight: S3 asks to retry; it will then answer 412.
            time.sleep(_CONFLICT_BACKOFF_S * (attempt + 1))
        raise StoreUnavailable(f"S3 verdict store: conditional writes to {key!r} kept conflicting")

    def _fall_back_to_head_then_put(self, key: str, body: bytes) -> bool:
        log.warning(
            "S3 server does not support conditional writes (If-None-Match); saving with head-then-put, "
            "which cannot rule out two racing saves of one verdict id"
        )
        self._conditional_writes = False
        return self._head_then_put(key, body)

    def _head_then_put(self, key: str, body: bytes) -> bool:
        """Racy: between the HEAD and the PUT another save of the same id may land and be overwritten."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return False
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND:
                raise
        self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return True

    def _read(self, key: str) -> Verdict | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return None
            raise
        stream = response["Body"]
        try:
            return Verdict.model_validate_json(stream.read())
        finally:
            stream.close()

    def _read_all(self, keys: Iterable[str]) -> builtins.list[Verdict]:
        """Every verdict among `keys` (parallel GETs); keys that vanished meanwhile are left out."""
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            return [verdict for verdict in pool.map(self._read, keys) if verdict is not None]

    def _keys(self, prefix: str, **options: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **options):  # type: ignore[arg-type]
            for item in page.get("Contents", []):
                key = item.get("Key", "")
                if key.endswith(".json"):
                    yield key


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _unavailable_on_failure(action: str) -> Iterator[None]:
    """Translate botocore failures (network, 5xx, missing bucket, access) into StoreUnavailable."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', '?')}: {error.get('Message', '')}"
        raise StoreUnavailable(f"S3 verdict store: {action} failed: {detail}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"S3 verdict store: {action} failed: {exc}") from exc
