"""Verdict stores: the `VerdictStore` interface, its SQL, S3 and in-memory implementations, and `open_store`.

`open_store` is the one place a store URL (`LLAVAGUARD_STORE_URL`) becomes a store; it reads no environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from worker.errors import SettingsError, StoreNotFound
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
    "require_existing_store",
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


def require_existing_store(store_url: str) -> None:
    """StoreNotFound when `store_url` is a SQLite file that does not exist; a reader calls it before opening.

    Only SQLite is checked: opening it would create an empty file (a wrong relative path then reads as "no
    verdicts"). A PostgreSQL database must exist to be connected to, and reading an S3 prefix creates nothing.
    """
    if store_url.split("://", 1)[0].lower() != "sqlite":
        return
    try:
        database = make_url(store_url).database
    except ArgumentError:
        return  # open_store says what is wrong with it
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).absolute()
    if not path.exists():
        raise StoreNotFound(
            f"LLAVAGUARD_STORE_URL: {store_url} names {path}, which does not exist (not created: only workers "
            "create their store); set it to the workers' store, best as an absolute sqlite:////path/verdicts.db"
        )


def _split_s3_url(store_url: str) -> tuple[str, str]:
    parts = urlsplit(store_url)
    if not parts.netloc:
        raise SettingsError("LLAVAGUARD_STORE_URL: an s3:// store URL names a bucket: s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")
