from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import services

# boto3 needs credentials even for moto; these are moto's documented dummies, not secrets.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# S3 clients built from settings without an explicit endpoint go to a closed loopback port, never to AWS.
os.environ.setdefault("LLAVAGUARD_S3_ENDPOINT_URL", "http://127.0.0.1:9")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with services.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with services.moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture()
def s3(s3_endpoint: str) -> Iterator[Any]:
    """A boto3 S3 client for the moto server, closed after the test."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    yield client
    client.close()


@pytest.fixture()
def bucket(s3: Any) -> str:
    """A fresh, uniquely named bucket on the moto server."""
    name = f"lg-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with services.postgres_database() as url:
        yield url


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path
