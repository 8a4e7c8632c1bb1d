"""The one S3 client factory: image fetches, the S3 verdict store, bulk audits and export all build here.

botocore's defaults wait 60 s per read and retry in "legacy" mode, and every caller used to pick its own;
now each use names its bounds (`S3Bounds`) and the composition root (worker/composition.py) passes them from
settings. Custom endpoints (MinIO & co.) are addressed by path: they have no per-bucket host names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class S3Bounds:
    """How long one S3 request may take and how often botocore retries it ("standard" mode).

    `retries` is botocore's `max_attempts`, which counts the retries after the first request.
    """

    connect_timeout_s: float
    read_timeout_s: float
    retries: int


STORE_BOUNDS = S3Bounds(connect_timeout_s=5.0, read_timeout_s=30.0, retries=5)
"""The verdict store: a verdict is worth waiting for, and a failed save retries the whole task anyway."""
IMAGE_FETCH_RETRIES = 3
"""Image fetches: bounded like the HTTP fetcher (its connect/read timeouts), three retries."""


def make_s3_client(endpoint_url: str | None, region: str, bounds: S3Bounds) -> S3Client:
    """A thread-safe client for AWS (`endpoint_url=None`) or an S3-compatible server."""
    config = Config(
        region_name=region, connect_timeout=bounds.connect_timeout_s, read_timeout=bounds.read_timeout_s,
        retries={"mode": "standard", "max_attempts": bounds.retries},
        s3={"addressing_style": "path"} if endpoint_url is not None else None,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
