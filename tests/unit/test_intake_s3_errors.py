"""S3 error translation for responses moto cannot produce (it does not enforce access control by default).

botocore's own Stubber answers with the exact error documents S3 sends; nothing leaves the process.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from mypy_boto3_s3 import S3Client

from worker.buckets import BucketAllowlist
from worker.errors import ErrorCode, ImageSourceUnavailable, ModerationFailed
from worker.intake.s3_fetch import S3Fetcher

BUCKET = BucketAllowlist(["bucket"])


@pytest.fixture()
def client() -> Iterator[S3Client]:
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url="http://s3.stub.invalid")
    yield s3
    s3.close()


@pytest.mark.parametrize(
    ("error_code", "status", "expected"),
    [
        ("AccessDenied", 403, ErrorCode.S3_ACCESS_DENIED),
        ("403", 403, ErrorCode.S3_ACCESS_DENIED),
        ("AllAccessDisabled", 403, ErrorCode.S3_ACCESS_DENIED),
        ("NoSuchKey", 404, ErrorCode.S3_NOT_FOUND),
        ("NoSuchBucket", 404, ErrorCode.S3_NOT_FOUND),
        ("404", 404, ErrorCode.S3_NOT_FOUND),
        ("InvalidObjectState", 400, ErrorCode.S3_ERROR),
    ],
)
def test_client_errors_are_translated(client: S3Client, error_code: str, status: int, expected: ErrorCode) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code=error_code, http_status_code=status)
        with pytest.raises(ModerationFailed) as caught:
            S3Fetcher(client, 1024, allowed=BUCKET).fetch("s3://bucket/key.png")
    assert caught.value.code == expected
    assert "s3://bucket/key.png" in caught.value.message


@pytest.mark.parametrize(("error_code", "status"), [("InternalError", 500), ("SlowDown", 503), ("SlowDown", 400)])
def test_server_errors_and_throttling_are_transient(client: S3Client, error_code: str, status: int) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code=error_code, http_status_code=status)
        with pytest.raises(ImageSourceUnavailable) as caught:
            S3Fetcher(client, 1024, allowed=BUCKET).fetch("s3://bucket/key.png")
    assert caught.value.code == ErrorCode.S3_ERROR and "s3://bucket/key.png" in caught.value.message


def test_a_declared_size_over_the_limit_is_refused_before_reading(client: S3Client) -> None:
    class Body:
        read_called = False
        closed = False

        def read(self, amount: int | None = None) -> bytes:
            self.read_called = True
            return b""

        def close(self) -> None:
            self.closed = True

    body = Body()
    with Stubber(client) as stub:
        stub.add_response("get_object", {"Body": body, "ContentLength": 10_000})
        with pytest.raises(ModerationFailed) as caught:
            S3Fetcher(client, 1024, allowed=BUCKET).fetch("s3://bucket/key.png")
    assert caught.value.code == ErrorCode.IMAGE_TOO_LARGE
    assert not body.read_called and body.closed
