"""Verdict stores: the `VerdictStore` interface, its SQL, S3 and in-memory implementations, and `open_store`.

`open_store` is the one place a store URL (`LLAVAGUARD_STORE_URL`) becomes a store; it reads no environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from worker.errors import SettingsError
from worker.s3_clients import STORE_BOUNDS, make_s3_client
from worker.stores.base import VerdictQuery, VerdictStore
from worker.stores.engine import SQL_SCHEMES
from worker.stores.memory import MemoryVerdictStore
from worker.stores.s3 import S3VerdictStore
from worker.stores.sql import SqlVerdictStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "MemoryVerdictStore",
    "S3VerdictStore",
    "SqlVerdictStore",
    "VerdictQuery",
    "VerdictStore",
    "open_store",
]

_SUPPORTED = (
    "sqlite:///path, postgresql://..., postgres://..., postgresql+psycopg://... or s3://bucket/prefix"
)


def open_store(
    store_url: str, *, s3_client: S3Client | None = None, s3_endpoint_url: str | None = None,
    s3_region: str = "us-east-1",
) -> VerdictStore:
    """The store `store_url` names; SettingsError for a URL no store accepts.

    An S3 store uses `s3_client` (the composition root passes one from worker/s3_clients.py), else one built
    with the store's bounds for `s3_endpoint_url`.

    SQL stores connect and migrate here, so an unreachable database raises StoreUnavailable.
    """
    scheme = store_url.split("://", 1)[0].lower() if "://" in store_url else ""
    if scheme in SQL_SCHEMES:
        return SqlVerdictStore(store_url)
    if scheme == "s3":
        bucket, prefix = _split_s3_url(store_url)
        client = s3_client or make_s3_client(s3_endpoint_url, s3_region, STORE_BOUNDS)
        return S3VerdictStore(bucket, prefix, client)
    shown = repr(scheme) if scheme else "(none)"
    raise SettingsError(f"LLAVAGUARD_STORE_URL: unsupported scheme {shown}: expected {_SUPPORTED}")


def _split_s3_url(store_url: str) -> tuple[str, str]:
    parts = urlsplit(store_url)
    if not parts.netloc:
        raise SettingsError("LLAVAGUARD_STORE_URL: an s3:// store URL names a bucket: s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")
