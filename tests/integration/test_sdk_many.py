"""SDK additions against real workers: `submit_many`, the asyncio client, and batch messages that retry
only their unfinished items."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from producers import IdempotencyConflict, ModerationClient, Submission
from producers.async_client import AsyncModerationClient
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.categories import category_for_code
from worker.errors import StoreNotFound
from worker.models import ImageRef, ModerationRequest
from worker.queues import BULK_QUEUE, SUBMITTED_KEY
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn


def base_settings(redis_url: str, sglang_url: str, tmp_path: Path) -> dict[str, str]:
    return {"redis_url": redis_url, "sglang_url": sglang_url, "store_url": f"sqlite:///{tmp_path}/v.db",
            "allowed_networks": "127.0.0.1/32", "allow_http": "true"}


def test_submit_many_validates_everything_first_then_publishes_in_order(
    fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer, tmp_path: Path
) -> None:
    settings = base_settings(fresh_redis, standin.url, tmp_path)
    url = image_server.serve_bytes("/o3.png", make_image("O3"), "image/png")
    with ModerationClient(settings=load_settings(**settings)) as client:
        with pytest.raises(ValueError, match=r"item 2: unknown category 'O42'"):
            client.submit_many([make_image("O1"), url, Submission(url, non_violating=["O42"])])
        assert redis.Redis.from_url(fresh_redis).dbsize() == 0, "nothing is published when any item is bad"

        items: list[Submission | str | bytes] = [
            make_image("O1"), url, Submission(make_image("O6"), non_violating=["O6"], metadata={"n": 2}),
            Submission(url, idempotency_key="same"), Submission(url, idempotency_key="same"),
        ]
        ids = client.submit_many(items, metadata={"batch": True}, priority=9)
        assert ids[3] == ids[4] and len(set(ids)) == 4
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4):
            verdicts = [client.wait(i, timeout=60) for i in ids]
    assert [v.category for v in verdicts] == [category_for_code(c) for c in ("O1", "O3", "O6", "O3", "O3")]
    assert [v.rating for v in verdicts] == ["Unsafe", "Unsafe", "Safe", "Unsafe", "Unsafe"]
    assert verdicts[0].metadata == {"batch": True} and verdicts[2].metadata == {"n": 2}
    assert standin.stats()["total_requests"] == 4, "the repeated idempotency key was enqueued once"


def test_the_async_client_has_the_same_methods(
    fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer, tmp_path: Path
) -> None:
    settings = base_settings(fresh_redis, standin.url, tmp_path)
    url = image_server.serve_bytes("/o7.png", make_image("O7"), "image/png")

    async def scenario() -> list[str | None]:
        async with AsyncModerationClient(settings=load_settings(**settings)) as client:
            one = await client.submit(url, metadata={"k": 1}, idempotency_key="k1")
            again = await client.submit(url, metadata={"k": 1}, idempotency_key="k1")
            with pytest.raises(IdempotencyConflict):
                await client.submit(url, idempotency_key="k1")  # the same key without the metadata
            many = await client.submit_many([make_image("NA"), Submission(url, non_violating=["O7"])])
            assert one == again and await client.is_submitted(one)
            with pytest.raises(StoreNotFound):  # no worker has created the store yet: a reader never does
                await client.get(one)
            assert await client.submitted([one, "unknown"]) == {one}
            with pytest.raises(TimeoutError):
                await client.wait(one, timeout=0.3)  # no worker yet
            with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4):
                verdicts = await asyncio.gather(*(client.wait(i, timeout=60) for i in [one, *many]))
            return [v.rating for v in verdicts]

    assert asyncio.run(scenario()) == ["Unsafe", "Safe", "Safe"]


def test_a_batch_message_retries_only_its_unfinished_items(fresh_redis: str, tmp_path: Path) -> None:
    """The stand-in fails its first 3 requests (503 queue full): only those 3 items are retried."""
    with SGLangStandIn("127.0.0.1", 0, max_running=32, service_time_s=0.01, fail_first=3) as flaky:
        settings = {**base_settings(fresh_redis, flaky.url, tmp_path), "retry_backoff_base_s": "0.2",
                    "retry_backoff_max_s": "1"}
        codes = ["O1", "O2", "O3", "O4", "O5", "O6", "O7", "O8", "O9", "NA"]
        requests = [ModerationRequest(id=f"batch-{n}", image=ImageRef(data=make_image(code)), metadata={"n": n})
                    for n, code in enumerate(codes)]
        invalid = {"id": "batch-invalid", "image": {"url": None, "data": None}}
        with ModerationClient(settings=load_settings(**settings), queue=BULK_QUEUE) as client:
            assert client.enqueue_batch(requests) == [r.id for r in requests]
            assert client.enqueue_batch(requests) == [], "marked ids are never published twice"
            client._app.send_task("llavaguard.moderate_batch", args=[[invalid, "not even a dict"]], queue=BULK_QUEUE)
            with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=2) as workers:
                verdicts = [client.wait(r.id, timeout=60) for r in requests]
                rejected = client.wait("batch-invalid", timeout=60)
                output = workers[0].output()
        stats = flaky.stats()
    assert [v.category for v in verdicts] == [category_for_code(c) for c in codes]
    assert all(v.status == "completed" for v in verdicts)
    assert rejected.status == "failed" and rejected.error and rejected.error.code == "request_invalid"
    assert stats["injected_failures"] == 3
    assert stats["total_requests"] == len(codes) + 3, "finished items were not judged again"
    retries = [json.loads(line) for line in output.splitlines() if "moderation.batch_retry" in line]
    assert retries and retries[0]["items"] == 3
    assert redis.Redis.from_url(fresh_redis).exists(SUBMITTED_KEY + "batch-0")
