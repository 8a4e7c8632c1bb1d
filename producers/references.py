"""What a producer may name as an image, checked before anything is enqueued.

Only the shape is checked here (a scheme the workers know, a host, a bucket and key, an absolute path): the
worker still applies every real rule when it fetches (the private-address guard, the shared root, the byte
limit). Catching a malformed reference at submit time turns a later `failed` verdict into an immediate error.
One rule is applied in full: an `s3://` bucket outside `LLAVAGUARD_S3_ALLOWED_BUCKETS` is refused here
(`ImageRefused`, code `fetch_address_refused`), the same refusal the worker makes when it fetches.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from worker.buckets import BucketAllowlist
from worker.errors import ErrorCode, ModerationFailed
from worker.intake.file_fetch import path_of_file_uri
from worker.intake.s3_fetch import parse_s3_uri

IMAGE_SCHEMES = ("https://", "http://", "s3://", "file://")
MAX_URL_LENGTH = 4096


class ImageRefused(ValueError):
    """The reference is well formed but names a place the workers will not read (`code` says which rule)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_image_url(url: str, *, s3_allowed_buckets: Collection[str]) -> str:
    """`url` unchanged if its shape is acceptable; ValueError saying what is wrong otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"image URL is longer than {MAX_URL_LENGTH} characters")
    scheme = url.split("://", 1)[0].lower() + "://" if "://" in url else ""
    if scheme not in IMAGE_SCHEMES or not url.lower().startswith(scheme):
        raise ValueError(f"image must be an https://, http://, s3:// or file:// URL, got {url[:80]!r}")
    try:
        if scheme == "s3://":
            _check_s3(url, s3_allowed_buckets)
        elif scheme == "file://":
            path_of_file_uri(url)
        else:
            _check_http(url)
    except ModerationFailed as exc:
        raise ValueError(exc.message) from None
    return url


def _check_s3(url: str, allowed_buckets: Collection[str]) -> None:
    bucket, _key = parse_s3_uri(url)
    try:
        BucketAllowlist(allowed_buckets).check(bucket)
    except ModerationFailed as exc:
        raise ImageRefused(exc.code, exc.message) from None


def _check_http(url: str) -> None:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port out of range
    except ValueError as exc:  # urlsplit's complaints: a bad IPv6 literal, a bad port
        raise ValueError(f"invalid image URL {url[:80]!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"image URL has no host: {url[:80]!r}")
