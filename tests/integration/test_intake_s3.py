"""S3Fetcher against moto's S3 server: the real wire protocol, a fresh bucket per test."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config
from mypy_boto3_s3 import S3Client

from tests.services import free_port
from worker.buckets import BucketAllowlist
from worker.errors import ErrorCode, ImageSourceUnavailable, ModerationFailed
from worker.intake.s3_fetch import S3Fetcher, parse_s3_uri

MAX_BYTES = 1024


def fetcher_for(client: S3Client, *buckets: str) -> S3Fetcher:
    return S3Fetcher(client, MAX_BYTES, allowed=BucketAllowlist(buckets))


def failure(fetcher: S3Fetcher, uri: str) -> ModerationFailed:
    with pytest.raises(ModerationFailed) as caught:
        fetcher.fetch(uri)
    return caught.value


def test_fetches_an_object(s3: S3Client, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dir/cat.png", Body=b"\x89PNG data")
    s3.put_object(Bucket=bucket, Key="odd ?#name//x.jpg", Body=b"odd")
    fetcher = fetcher_for(s3, bucket)
    assert fetcher.fetch(f"s3://{bucket}/dir/cat.png") == b"\x89PNG data"
    assert fetcher.fetch(f"s3://{bucket}/odd ?#name//x.jpg") == b"odd"


def test_limits_and_empty_objects(s3: S3Client, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="exact", Body=b"x" * MAX_BYTES)
    s3.put_object(Bucket=bucket, Key="big", Body=b"x" * (MAX_BYTES + 1))
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    fetcher = fetcher_for(s3, bucket)
    assert fetcher.fetch(f"s3://{bucket}/exact") == b"x" * MAX_BYTES
    assert failure(fetcher, f"s3://{bucket}/big").code == ErrorCode.IMAGE_TOO_LARGE
    assert failure(fetcher, f"s3://{bucket}/empty").code == ErrorCode.IMAGE_EMPTY


def test_missing_objects_and_buckets(s3: S3Client, bucket: str) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    fetcher = fetcher_for(s3, bucket, missing)  # allowed, but never created
    assert failure(fetcher, f"s3://{bucket}/nope.png").code == ErrorCode.S3_NOT_FOUND
    assert failure(fetcher, f"s3://{missing}/x.png").code == ErrorCode.S3_NOT_FOUND


@pytest.mark.parametrize(
    "uri", ["s3://", "s3://bucket-only", "s3://bucket-only/", "s3:///key", "https://b/k"]
)
def test_malformed_uris_are_invalid_requests(s3: S3Client, uri: str) -> None:
    assert failure(fetcher_for(s3, "bucket-only"), uri).code == ErrorCode.REQUEST_INVALID


def test_uri_parsing_keeps_the_key_verbatim() -> None:
    assert parse_s3_uri("S3://bucket/a/b?c#d") == ("bucket", "a/b?c#d")


def test_an_unreachable_endpoint_is_transient() -> None:
    config = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})
    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1", config=config
    )
    try:
        with pytest.raises(ImageSourceUnavailable) as caught:
            S3Fetcher(client, MAX_BYTES, allowed=BucketAllowlist(["bucket"])).fetch("s3://bucket/key.png")
    finally:
        client.close()
    assert caught.value.code == ErrorCode.S3_ERROR  # the code its failed verdict gets once retries run out
