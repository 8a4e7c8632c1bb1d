"""The synchronous path: `POST /v1/moderations?wait=`, `ModerationClient.moderate` and the async client's,
with a real worker, the real API on uvicorn, real Redis and the stand-in; woken by the worker's message."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from producers.async_client import AsyncModerationClient
from producers.client import ModerationClient
from producers.verdict_waits import BACKSTOP_S
from tests.api_server import API_KEY, running_api
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.categories import category_for_code
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PROBLEM = "application/problem+json"


def test_wait_answers_the_verdict_or_202_and_the_sdk_moderates_inline(
    fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer, tmp_path: Path
) -> None:
    settings = {"redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
                "allowed_networks": "127.0.0.1/32", "allow_http": "true", "api_keys": API_KEY}
    url = image_server.serve_bytes("/u/o4.png", make_image("O4"), "image/png")
    with running_workers(worker_env(**settings), tmp_path / "logs", count=1, concurrency=4), \
            running_api(load_settings(**settings)) as base, httpx.Client(base_url=base, headers=AUTH) as api:
        for bad in ("0", "61", "soon"):
            refused = api.post(f"/v1/moderations?wait={bad}", json={"image_url": url})
            assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM, refused.text

        judged = api.post("/v1/moderations?wait=5", json={"image_url": url, "metadata": {"n": 1}}, timeout=10)
        assert judged.status_code == 200, judged.text
        verdict = judged.json()
        assert (verdict["status"], verdict["rating"], verdict["category"]) == (
            "completed", "Unsafe", category_for_code("O4"))
        assert verdict["metadata"] == {"n": 1} and judged.headers["location"] == f"/v1/moderations/{verdict['id']}"

        standin.service_time_s = 1.5  # slower than the wait: 202 as without `?wait=`
        started = time.monotonic()
        late = api.post("/v1/moderations?wait=0.3", json={"image_url": url}, timeout=10)
        assert late.status_code == 202 and late.json()["status"] == "pending"
        assert 0.3 <= time.monotonic() - started < 1.4

        started = time.monotonic()
        woken = api.post("/v1/moderations?wait=30", json={"image_url": url}, timeout=40)
        took = time.monotonic() - started
        assert woken.status_code == 200 and woken.json()["status"] == "completed"
        assert 1.5 <= took < BACKSTOP_S - 1, f"{took:.2f}s: woken by the worker's message, not a backstop read"

        standin.service_time_s = 0.05
        sdk = load_settings(**settings)
        with ModerationClient(settings=sdk) as client:
            inline = client.moderate(url, non_violating=["O4"], timeout=10)
            assert (inline.status, inline.rating) == ("completed", "Safe")
            standin.service_time_s = 2.0
            started = time.monotonic()
            try:
                client.moderate(url, timeout=0.5)
                raise AssertionError("expected TimeoutError")
            except TimeoutError as exc:
                assert "within 0.5s" in str(exc) and time.monotonic() - started < 1.5
            standin.service_time_s = 0.05

        async def moderate_async() -> list[str]:
            async with AsyncModerationClient(settings=sdk) as aclient:
                verdicts = await asyncio.gather(*(aclient.moderate(url, metadata={"n": n}, timeout=10)
                                                  for n in range(5)))
            return [v.rating or "" for v in verdicts]

        assert asyncio.run(moderate_async()) == ["Unsafe"] * 5
