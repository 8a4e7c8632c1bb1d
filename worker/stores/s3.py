"""The verdict store on S3 (or an S3-compatible server): one JSON object per verdict.

Layout: `<prefix>/verdicts/<id>.json`, or `verdicts/<id>.json` with an empty prefix. Saving is a conditional
write (`If-None-Match: *`), so S3 itself refuses a second object for an id: exactly one racing save wins.
Servers without conditional writes answer 501 and the store falls back to head-then-put, which has a race
(two saves may both see "absent" and the later put overwrites the earlier); pass `conditional_writes=False`
to choose that fallback up front. This module never creates or deletes buckets or objects it did not write.

`list` and `count` scan the whole prefix (and `list` reads every object): fine for thousands of verdicts; a
large store should be listed through an index (e.g. the SQL store fed alongside), not by scanning.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker.errors import StoreUnavailable
from worker.models import Verdict
from worker.stores.base import DEFAULT_LIST_LIMIT, VerdictQuery, unique_ids

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

    def __repr__(self) -> str:
        return f"S3VerdictStore(bucket={self.bucket!r}, root={self.root!r})"

    def key(self, id: str) -> str:
        return f"{self.root}{id}.json"

    def save(self, verdict: Verdict) -> bool:
        body = verdict.model_dump_json().encode()
        key = self.key(verdict.id)
        with _unavailable_on_failure("saving a verdict"):
            if self._conditional_writes:
                return self._put_if_none_match(key, body)
            return self._head_then_put(key, body)

    def get(self, id: str) -> Verdict | None:
        with _unavailable_on_failure("reading a verdict"):
            return self._read(self.key(id))

    def get_many(self, ids: Iterable[str]) -> dict[str, Verdict]:
        wanted = unique_ids(ids)
        with _unavailable_on_failure("reading verdicts"):
            verdicts = self._read_all(self.key(id) for id in wanted)
        return {verdict.id: verdict for verdict in verdicts}

    def list(
        self,
        *,
        rating: str | None = None,
        category: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[Verdict]:
        query = VerdictQuery.build(rating=rating, category=category, since=since, until=until, limit=limit)
        with _unavailable_on_failure("listing verdicts"):
            return query.apply(self._read_all(self._keys()))

    def count(self) -> int:
        with _unavailable_on_failure("counting verdicts"):
            return sum(1 for _ in self._keys())

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

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

    def _keys(self) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.root):
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
