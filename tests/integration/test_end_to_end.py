"""200 images of known content through the SDK, 2 real worker processes, the stand-in, each store kind."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from producers import ModerationClient
from tests import services
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.categories import category_for_code
from worker.settings import load_settings
from worker.standin.palette import PALETTE, make_image
from worker.standin.sglang_standin import SGLangStandIn
from worker.stores import VerdictQuery, open_store

CODES = sorted(PALETTE)
IMAGE_COUNT = 200


@dataclass(frozen=True)
class Case:
    image: str | bytes
    code: str
    non_violating: tuple[str, ...]
    original: bytes

    @property
    def expected_rating(self) -> str:
        return "Safe" if self.code == "NA" or self.code in self.non_violating else "Unsafe"


@pytest.fixture(params=["sqlite", "postgresql", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, bucket: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/verdicts.db"
    elif request.param == "postgresql":
        with services.postgres_database() as url:
            yield url
    else:
        yield f"s3://{bucket}/e2e"


def build_cases(image_server: LoopbackHTTPServer, s3_endpoint: str, bucket: str) -> list[Case]:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    cases = []
    for i in range(IMAGE_COUNT):
        code = CODES[i % len(CODES)]
        kind = (i // len(CODES)) % 4
        data = make_image(code, size=(48 + i % 7, 40 + i % 5), fmt=["PNG", "JPEG", "WEBP", "PNG"][kind])
        non_violating: tuple[str, ...] = ()
        image: str | bytes = data
        if kind == 1:
            image = image_server.serve_bytes(f"/img/{i}.jpg", data, "image/jpeg")
        elif kind == 2:
            s3.put_object(Bucket=bucket, Key=f"uploads/{i}.webp", Body=data)
            image = f"s3://{bucket}/uploads/{i}.webp"
        elif kind == 3 and code != "NA":
            non_violating = (code,)
        cases.append(Case(image, code, non_violating, data))
    return cases


def test_two_hundred_images_two_workers_every_verdict_right_and_stored_once(
    store_url: str, fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer,
    s3_endpoint: str, bucket: str, tmp_path: Path,
) -> None:
    settings = {
        "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": store_url,
        "s3_endpoint_url": s3_endpoint, "allowed_networks": "127.0.0.1/32", "allow_http": "true",
        "s3_allowed_buckets": bucket,
    }
    cases = build_cases(image_server, s3_endpoint, bucket)
    with running_workers(worker_env(**settings), tmp_path, count=2, concurrency=8) as workers:
        client = ModerationClient(settings=load_settings(**settings))
        ids = [
            client.submit(case.image, non_violating=list(case.non_violating), metadata={"n": n})
            for n, case in enumerate(cases)
        ]
        verdicts = [client.wait(moderation_id, timeout=120) for moderation_id in ids]
        client.close()
        outputs = [w.output() for w in workers]

    for n, (case, verdict) in enumerate(zip(cases, verdicts, strict=True)):
        assert verdict.status == "completed", (n, verdict.error)
        assert verdict.category == category_for_code(case.code), n
        assert verdict.rating == case.expected_rating, n
        assert verdict.metadata == {"n": n}
        assert verdict.model == "llavaguard-standin"
        assert verdict.image.sha256 == hashlib.sha256(case.original).hexdigest()
        assert verdict.image.source == (case.image if isinstance(case.image, str) else None)
        assert verdict.policy.name == "llavaguard-v1.2" and verdict.policy.sha256 is not None
    declared = [v for c, v in zip(cases, verdicts, strict=True) if c.non_violating]
    assert declared and all(v.rationale and v.rationale.endswith("classified as safe.") for v in declared)
    assert len({v.policy.sha256 for v in verdicts}) > 1  # declarations change the prompt that was sent

    store = open_store(store_url, s3_endpoint_url=s3_endpoint)
    try:
        assert store.count() == IMAGE_COUNT
        assert len({v.id for v in store.list(VerdictQuery(limit=None))}) == IMAGE_COUNT
    finally:
        store.close()
    assert all("moderation.stored" in out for out in outputs), "both workers took part"
    assert standin.stats()["total_requests"] == IMAGE_COUNT
