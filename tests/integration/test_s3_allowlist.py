"""`s3://` images only from LLAVAGUARD_S3_ALLOWED_BUCKETS: at submit (SDK, HTTP API) and in the worker.

The worker's check is the real enforcement (anyone with Redis access can enqueue), so it is tested with
messages sent straight through the broker, against an S3 endpoint that counts every request it gets: a
refused bucket must cost no request at all, so nothing about objects outside the allowlist can leak.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis
from mypy_boto3_s3 import S3Client

from producers import ModerationClient
from producers.references import ImageRefused
from tests.api_server import API_KEY, running_api
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.buckets import BucketAllowlist
from worker.errors import ErrorCode, ModerationFailed, SettingsError
from worker.intake.s3_fetch import S3Fetcher
from worker.queues import MODERATE_TASK
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

REFUSED_NAMES = [
    "arn:aws:s3:us-east-1:123456789012:accesspoint:ap",  # boto3 would send this to the access point's host
    "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint:ol",
    "myap-abcdefghijklmnop-s3alias",  # an access-point alias
    "fast--use1-az4--x-s3",  # a directory bucket: a zonal endpoint
    "mrap.mrap",
    "192.168.10.20",
    "Upper-Case",
    "under_score",
    "ab",
    "a..b",
    "x" * 64,
]


@pytest.fixture()
def counted(s3: S3Client) -> Iterator[list[str]]:
    """Every request the `s3` client sends, by operation name."""
    sent: list[str] = []

    def record(**kwargs: Any) -> None:
        sent.append(str(kwargs.get("event_name", "")))

    s3.meta.events.register("before-send.s3", record)
    yield sent
    s3.meta.events.unregister("before-send.s3", record)


def refusal(fetcher: S3Fetcher, uri: str) -> ModerationFailed:
    with pytest.raises(ModerationFailed) as caught:
        fetcher.fetch(uri)
    return caught.value


def test_a_bucket_outside_the_allowlist_is_refused_without_asking_s3(
    s3: S3Client, bucket: str, counted: list[str]
) -> None:
    other = f"lg-secret-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=other, Key="x.jpg", Body=b"y" * 12345)
    counted.clear()
    fetcher = S3Fetcher(s3, 1 << 20, allowed=BucketAllowlist([bucket]))
    existing = refusal(fetcher, f"s3://{other}/x.jpg")
    missing = refusal(fetcher, f"s3://{other}/nope.jpg")
    assert existing.code == missing.code == ErrorCode.FETCH_ADDRESS_REFUSED
    assert counted == [], "a refused bucket must cost no S3 request"
    assert existing.message == missing.message, "the answer must not depend on what the bucket holds"
    assert "12345" not in existing.message and "not in LLAVAGUARD_S3_ALLOWED_BUCKETS" in existing.message


def test_an_empty_allowlist_refuses_every_bucket(s3: S3Client, bucket: str, counted: list[str]) -> None:
    s3.put_object(Bucket=bucket, Key="a.png", Body=b"png")
    counted.clear()
    failure = refusal(S3Fetcher(s3, 1 << 20, allowed=BucketAllowlist([])), f"s3://{bucket}/a.png")
    assert failure.code == ErrorCode.FETCH_ADDRESS_REFUSED and "empty" in failure.message
    assert counted == []


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_arns_aliases_and_invalid_names_are_refused(s3: S3Client, name: str, counted: list[str]) -> None:
    fetcher = S3Fetcher(s3, 1 << 20, allowed=BucketAllowlist(["images"]))
    assert refusal(fetcher, f"s3://{name}/key.png").code == ErrorCode.FETCH_ADDRESS_REFUSED
    assert counted == []
    with pytest.raises(SettingsError, match="LLAVAGUARD_S3_ALLOWED_BUCKETS"):
        load_settings(s3_allowed_buckets=f"images,{name}")  # nor can an operator list one


def test_an_allowed_bucket_is_read_and_its_missing_objects_are_not_found(s3: S3Client, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a.png", Body=b"png bytes")
    fetcher = S3Fetcher(s3, 1 << 20, allowed=BucketAllowlist(["unrelated", bucket]))
    assert fetcher.fetch(f"s3://{bucket}/a.png") == b"png bytes"
    assert refusal(fetcher, f"s3://{bucket}/nope.png").code == ErrorCode.S3_NOT_FOUND


def test_the_sdk_refuses_at_submit_and_enqueues_nothing(fresh_redis: str, tmp_path: Path, bucket: str) -> None:
    store = f"sqlite:///{tmp_path}/v.db"
    for allowed, uri in [("", f"s3://{bucket}/a.png"), (bucket, "s3://someone-elses/a.png"),
                         (bucket, "s3://arn:aws:s3:us-east-1:123456789012:accesspoint:ap/a.png")]:
        with ModerationClient(settings=load_settings(redis_url=fresh_redis, store_url=store,
                                                     s3_allowed_buckets=allowed)) as client:
            with pytest.raises(ImageRefused) as caught:
                client.submit(uri)
            assert caught.value.code == ErrorCode.FETCH_ADDRESS_REFUSED
            with pytest.raises(ImageRefused, match="item 1"):
                client.submit_many(["https://example.com/a.png", uri])
    assert redis.Redis.from_url(fresh_redis).dbsize() == 0
    with ModerationClient(settings=load_settings(redis_url=fresh_redis, store_url=store,
                                                 s3_allowed_buckets=bucket)) as client:
        assert client.is_submitted(client.submit(f"s3://{bucket}/a.png"))


def test_the_api_refuses_at_submit(fresh_redis: str, tmp_path: Path, bucket: str) -> None:
    settings = load_settings(redis_url=fresh_redis, store_url=f"sqlite:///{tmp_path}/v.db", api_keys=API_KEY,
                             s3_allowed_buckets=bucket)
    with running_api(settings) as url, httpx.Client(base_url=url,
                                                    headers={"Authorization": f"Bearer {API_KEY}"}) as api:
        refused = api.post("/v1/moderations", json={"image_url": "s3://someone-elses/secret.png"})
        batch = api.post("/v1/moderations/batch", json={"items": [
            {"image_url": f"s3://{bucket}/ok.png"}, {"image_url": "s3://someone-elses/secret.png"}]})
        assert redis.Redis.from_url(fresh_redis).dbsize() == 0
        accepted = api.post("/v1/moderations", json={"image_url": f"s3://{bucket}/ok.png"})
        schema = api.get("/openapi.json").json()
    assert (refused.status_code, refused.json()["code"]) == (422, "fetch_address_refused")
    assert (batch.status_code, batch.json()["code"]) == (422, "fetch_address_refused")
    assert batch.json()["detail"].startswith("items[1]: ")
    assert accepted.status_code == 202
    body = schema["paths"]["/v1/moderations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    pattern = re.compile(body["properties"]["image_url"]["pattern"])  # the document says what is accepted
    assert pattern.search(f"s3://{bucket}/ok.png") and not pattern.search("s3://someone-elses/secret.png")


def test_the_worker_refuses_messages_sent_straight_through_redis(
    fresh_redis: str, standin: SGLangStandIn, tmp_path: Path
) -> None:
    """The S3 endpoint is a loopback server that logs every request: refused buckets never reach it."""
    endpoint = LoopbackHTTPServer("127.0.0.1")
    settings = {"redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
                "s3_endpoint_url": endpoint.url(""), "s3_allowed_buckets": "allowed-images"}
    refused = ["s3://secret-bucket/x.jpg", "s3://arn:aws:s3:us-east-1:123456789012:accesspoint:ap/x.jpg",
               "s3://ap-abcdefghijklmnop-s3alias/x.jpg", "s3://127.0.0.1/x.jpg"]
    uris = [*refused, "s3://allowed-images/x.jpg"]
    try:
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4):
            client = ModerationClient(settings=load_settings(**settings))
            for n, uri in enumerate(uris):  # no SDK validation on this path
                client._app.send_task(MODERATE_TASK, args=[{"id": f"raw-{n}", "image": {"url": uri}}])
            verdicts = [client.wait(f"raw-{n}", timeout=60) for n in range(len(uris))]
            client.close()
    finally:
        endpoint.close()
    for uri, verdict in zip(refused, verdicts, strict=False):
        assert verdict.status == "failed" and verdict.error is not None, uri
        assert verdict.error.code == "fetch_address_refused", (uri, verdict.error)
        assert verdict.image.sha256 is None and verdict.image.width is None
    allowed = verdicts[-1]
    assert allowed.error is not None and allowed.error.code == "s3_not_found"  # the endpoint answers 404
    assert endpoint.hits and all(hit.startswith("/allowed-images/") for hit in endpoint.hits), endpoint.hits


def test_an_audit_refuses_a_bucket_the_workers_would_not_read(
    fresh_redis: str, tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    from producers.bulk.audit import AuditOptions, run_audit

    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "a.png").write_bytes(make_image("O1"))
    settings = load_settings(redis_url=fresh_redis, store_url=f"sqlite:///{tmp_path}/v.db",
                             s3_endpoint_url=s3_endpoint, s3_allowed_buckets="some-other-bucket")
    for options in (AuditOptions(str(folder), upload_to=f"s3://{bucket}/up", progress=False),
                    AuditOptions(f"s3://{bucket}/up/", progress=False)):
        with pytest.raises(ValueError, match="not in LLAVAGUARD_S3_ALLOWED_BUCKETS"):
            run_audit(settings, options)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket), "nothing was uploaded"
