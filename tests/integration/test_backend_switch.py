"""Switching backends is one setting: a real worker process with `LLAVAGUARD_BACKEND=vllm` against the stand-in
speaking vLLM's dialect stores verdicts that say `vllm`, the model, the constraint and an exact score."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from producers import ModerationClient
from tests.contract.test_backends import closed_port_url
from tests.harness import running_workers, worker_env
from worker.settings import load_settings
from worker.standin import STANDIN_MODEL, SGLangStandIn, make_image
from worker.stores import open_store


@pytest.fixture()
def vllm_standin() -> Iterator[SGLangStandIn]:
    with SGLangStandIn(service_time_s=0.0, dialect="vllm") as standin:
        yield standin


def test_a_vllm_worker_stores_backend_model_constraint_and_score(
    fresh_redis: str, vllm_standin: SGLangStandIn, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/verdicts.db"
    settings = {
        "redis_url": fresh_redis, "store_url": store_url, "backend": "vllm", "inference_url": vllm_standin.url,
        "sglang_url": closed_port_url(),  # the vllm backend must not read it once inference_url is set
    }
    with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=2):
        client = ModerationClient(settings=load_settings(**settings))
        unsafe, safe = client.submit(make_image("O5")), client.submit(make_image("NA"))
        verdicts = [client.wait(moderation_id, timeout=60) for moderation_id in (unsafe, safe)]
        client.close()

    store = open_store(store_url)
    try:
        stored = [store.get(moderation_id) for moderation_id in (unsafe, safe)]
    finally:
        store.close()
    for verdict in [*verdicts, *stored]:
        assert verdict is not None and verdict.status == "completed", verdict
        assert (verdict.backend, verdict.model, verdict.constraint) == ("vllm", STANDIN_MODEL, "regex")
        assert verdict.score_source == "logprobs"
    assert [v.rating for v in stored if v] == ["Unsafe", "Safe"]
    assert [v.score for v in stored if v] == [pytest.approx(0.99), pytest.approx(0.01)]
    assert vllm_standin.stats()["total_requests"] == 2
