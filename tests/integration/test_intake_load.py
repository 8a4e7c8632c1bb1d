"""Intake.load end to end: inline bytes, a loopback HTTP server and moto's S3, built from Settings."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from io import BytesIO

import pytest
from mypy_boto3_s3 import S3Client
from PIL import Image

from tests.integration.test_intake_http import PNG, ImageServer, running
from worker import composition
from worker.errors import ErrorCode, ModerationFailed
from worker.intake import Intake
from worker.models import ImageRef
from worker.settings import Settings

SETTINGS = Settings(
    allowed_networks=["127.0.0.1/32"],  # parsed by the settings validator
    allow_http=True,
    max_image_bytes=200_000,
    max_image_side_px=32,
    fetch_connect_timeout_s=2,
    fetch_read_timeout_s=2,
    fetch_total_timeout_s=5,
    s3_allowed_buckets=["intake-images"],
)


def large_png() -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (100, 50), (0, 128, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def intake(s3: S3Client) -> Iterator[Intake]:
    with contextlib.closing(composition.intake(SETTINGS, s3)) as built:
        yield built


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with running(ImageServer("127.0.0.1")) as srv:
        yield srv


def failure(intake: Intake, ref: ImageRef) -> ErrorCode:
    with pytest.raises(ModerationFailed) as caught:
        intake.load(ref)
    return caught.value.code


def test_inline_bytes(intake: Intake) -> None:
    data = large_png()
    prepared = intake.load(ImageRef(data=data))
    assert prepared.info.sha256 == hashlib.sha256(data).hexdigest()
    assert (prepared.info.width, prepared.info.height, prepared.info.format) == (100, 50, "PNG")
    assert prepared.info.source is None
    assert Image.open(BytesIO(prepared.payload)).size == (32, 16)


def test_http_url(intake: Intake, server: ImageServer) -> None:
    url = server.url("/image.png")
    prepared = intake.load(ImageRef(url=url))
    assert prepared.info.source == url
    assert prepared.info.sha256 == hashlib.sha256(PNG).hexdigest()


def test_s3_uri(intake: Intake, s3: S3Client) -> None:
    bucket = "intake-images"  # the one bucket SETTINGS allows
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a.png", Body=large_png())
    prepared = intake.load(ImageRef(url=f"s3://{bucket}/a.png"))
    assert (prepared.info.format, prepared.info.source) == ("PNG", f"s3://{bucket}/a.png")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/a.png", "file:///etc/passwd", "data:image/png;base64,AAAA", "image.png", ""]
)
def test_unsupported_references(intake: Intake, url: str) -> None:
    assert failure(intake, ImageRef(url=url)) == ErrorCode.FETCH_SCHEME_UNSUPPORTED


def test_s3_without_a_client_is_unsupported() -> None:
    with contextlib.closing(composition.intake(SETTINGS)) as no_s3:
        assert failure(no_s3, ImageRef(url="s3://bucket/key")) == ErrorCode.FETCH_SCHEME_UNSUPPORTED


def test_inline_limits_and_garbage(intake: Intake) -> None:
    assert failure(intake, ImageRef(data=b"\x89PNG" + b"x" * 200_000)) == ErrorCode.IMAGE_TOO_LARGE
    assert failure(intake, ImageRef(data=b"hello")) == ErrorCode.IMAGE_NOT_AN_IMAGE
    assert failure(intake, ImageRef(data=b"")) == ErrorCode.IMAGE_EMPTY


def test_refused_urls_fail_before_decoding(intake: Intake) -> None:
    assert failure(intake, ImageRef(url="http://127.0.0.2:9/a.png")) == ErrorCode.FETCH_ADDRESS_REFUSED
