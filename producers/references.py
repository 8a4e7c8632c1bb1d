"""What a producer may name as an image, checked before anything is enqueued.

Only the shape is checked here (a scheme the workers know, a host, a bucket and key, an absolute path): the
worker still applies every real rule when it fetches (the private-address guard, the shared root, the byte
limit). Catching a malformed reference at submit time turns a later `failed` verdict into an immediate error.
Two rules are applied in full, the same refusals the workers make when they fetch (`ImageRefused`): an
`s3://` bucket outside `LLAVAGUARD_S3_ALLOWED_BUCKETS` (code `fetch_address_refused`), and an `http://` URL
while `LLAVAGUARD_ALLOW_HTTP` is false (code `fetch_scheme_unsupported`), so the producer learns it at
submit instead of from a failed verdict.
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


def check_image_url(url: str, *, s3_allowed_buckets: Collection[str], allow_http: bool = True) -> str:
    """`url` unchanged if its shape is acceptable; ValueError saying what is wrong otherwise.

    `allow_http` is `LLAVAGUARD_ALLOW_HTTP` as the producer reads it (the workers' setting, by the same name).
    """
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
            _check_http(url, allow_http)
    except ModerationFailed as exc:
        raise ValueError(exc.message) from None
    return url


def _check_s3(url: str, allowed_buckets: Collection[str]) -> None:
    bucket, _key = parse_s3_uri(url)
    try:
        BucketAllowlist(allowed_buckets).check(bucket)
    except ModerationFailed as exc:
        raise ImageRefused(exc.code, exc.message) from None


def _check_http(url: str, allow_http: bool) -> None:
    if not allow_http and url[:7].lower() == "http://":
        raise ImageRefused(
            ErrorCode.FETCH_SCHEME_UNSUPPORTED,
            "http:// image URLs are refused (the workers fetch https:// only): use https://, or set "
            "LLAVAGUARD_ALLOW_HTTP=true for the workers and this producer",
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port out of range
    except ValueError as exc:  # urlsplit's complaints: a bad IPv6 literal, a bad port
        raise ValueError(f"invalid image URL {url[:80]!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"image URL has no host: {url[:80]!r}")
