"""Download an image named by an `s3://bucket/key` URI through a boto3 client, size-limited.

The client only talks to its configured endpoint, but it reads with the worker's credentials: so a bucket
must be in the operator's allowlist (`worker.buckets`), checked before any request, or the image fails
`fetch_address_refused` without S3 ever being asked. What must also never happen is reading an arbitrarily
large object into memory, so the declared size is checked and the read is bounded.
Timeouts are the client's (`botocore.config.Config(connect_timeout=..., read_timeout=...)`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from worker.buckets import BucketAllowlist
from worker.errors import ErrorCode, ImageSourceUnavailable, ModerationFailed
from worker.intake.limits import too_large

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCHEME = "s3://"
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "Forbidden", "403"})
THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; the key is taken verbatim (it may contain `?`, `#`, `//`)."""
    if uri[: len(SCHEME)].lower() != SCHEME:
        raise ModerationFailed(ErrorCode.REQUEST_INVALID, f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not bucket or not key:
        raise ModerationFailed(ErrorCode.REQUEST_INVALID, f"an S3 URI is s3://bucket/key, got {uri!r}")
    return bucket, key


class S3Fetcher:
    """Fetches object bytes; boto3 clients are thread-safe, so one fetcher serves every thread."""

    def __init__(self, client: S3Client, max_bytes: int, *, allowed: BucketAllowlist) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.allowed = allowed

    def close(self) -> None:
        """The boto3 client belongs to the composition root, which may share it."""

    def fetch(self, uri: str) -> bytes:
        bucket, key = parse_s3_uri(uri)
        self.allowed.check(bucket)
        try:
            return self._get(bucket, key)
        except ParamValidationError as exc:
            raise ModerationFailed(ErrorCode.REQUEST_INVALID, f"invalid S3 location {uri!r}: {exc}") from exc
        except ClientError as exc:
            raise _translate_client_error(uri, exc) from exc
        except BotoCoreError as exc:  # connection refused, timeouts: the endpoint, not the image
            raise ImageSourceUnavailable(f"reading {uri!r} failed: {exc}") from exc

    def _get(self, bucket: str, key: str) -> bytes:
        response = self.client.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            declared = response.get("ContentLength")
            if declared is not None and declared > self.max_bytes:
                raise too_large(self.max_bytes, f"the object is {declared} bytes")
            data = body.read(self.max_bytes + 1)
        finally:
            body.close()
        if len(data) > self.max_bytes:
            raise too_large(self.max_bytes, "the object sent more")
        if not data:
            raise ModerationFailed(ErrorCode.IMAGE_EMPTY, f"s3://{bucket}/{key} is empty")
        return data


def _translate_client_error(uri: str, exc: ClientError) -> ModerationFailed | ImageSourceUnavailable:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in NOT_FOUND_CODES or status == "404":
        return ModerationFailed(ErrorCode.S3_NOT_FOUND, f"{uri} does not exist ({code or status})")
    if code in ACCESS_DENIED_CODES or status == "403":
        return ModerationFailed(ErrorCode.S3_ACCESS_DENIED, f"access to {uri} is denied ({code or status})")
    message = f"reading {uri} failed: {code or status}: {error.get('Message', '')}"
    if status.startswith("5") or code in THROTTLING_CODES:
        return ImageSourceUnavailable(message)
    return ModerationFailed(ErrorCode.S3_ERROR, message)

