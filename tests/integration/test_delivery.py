"""Work is never lost and never judged into two verdicts: retries, exhaustion, SIGKILL, idempotency."""

from __future__ import annotations

import time
from pathlib import Path

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from tests.services import free_port
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn
from worker.stores import open_store


def base_settings(redis_url: str, sglang_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "redis_url": redis_url, "sglang_url": sglang_url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "retry_backoff_base_s": "0.2", "retry_backoff_max_s": "1", **extra,
    }


def test_transient_server_errors_are_retried_until_a_verdict(fresh_redis: str, tmp_path: Path) -> None:
    with SGLangStandIn("127.0.0.1", 0, max_running=4, service_time_s=0.01, fail_first=3) as flaky:
        settings = base_settings(fresh_redis, flaky.url, tmp_path)
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=2):
            with ModerationClient(settings=load_settings(**settings)) as client:
                verdict = client.wait(client.submit(make_image("O2")), timeout=60)
        assert flaky.stats()["total_requests"] >= 4
    assert verdict.status == "completed" and verdict.category == "O2: Violence, Harm, or Cruelty"


def test_server_down_ends_as_failed_verdict_after_bounded_retries(fresh_redis: str, tmp_path: Path) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    settings = base_settings(fresh_redis, dead_url, tmp_path, max_retries="2")
    with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=2):
        with ModerationClient(settings=load_settings(**settings)) as client:
            verdict = client.wait(client.submit(make_image("O1")), timeout=60)
    assert verdict.status == "failed"
    assert verdict.error is not None and verdict.error.code == "inference_unavailable"
    assert "3 attempts" in verdict.error.message


def test_idempotency_key_yields_one_moderation(fresh_redis: str, standin: SGLangStandIn, tmp_path: Path) -> None:
    settings = base_settings(fresh_redis, standin.url, tmp_path)
    with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=2):
        with ModerationClient(settings=load_settings(**settings)) as client:
            first = client.submit(make_image("O3"), idempotency_key="upload-42")
            second = client.submit(make_image("O3"), idempotency_key="upload-42")
            assert first == second
            client.wait(first, timeout=60)
            time.sleep(1)  # give a (wrong) second task time to reach the model
            assert client.store.count() == 1
    assert standin.stats()["total_requests"] == 1


def test_worker_killed_mid_batch_loses_nothing(fresh_redis: str, tmp_path: Path) -> None:
    count = 12
    with SGLangStandIn("127.0.0.1", 0, max_running=32, service_time_s=2.0) as slow:
        settings = base_settings(fresh_redis, slow.url, tmp_path, visibility_timeout_s="8")
        env = worker_env(**settings)
        with ModerationClient(settings=load_settings(**settings)) as client:
            ids = [client.submit(make_image("O7"), metadata={"n": n}) for n in range(count)]
            with running_workers(env, tmp_path / "a", count=1, concurrency=4) as (victim,):
                deadline = time.monotonic() + 30
                while slow.stats()["running"] < 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert slow.stats()["running"] == 4, "the victim holds 4 moderations in flight"
                victim.kill()
            with running_workers(env, tmp_path / "b", count=1, concurrency=8):
                verdicts = [client.wait(i, timeout=90) for i in ids]
            assert all(v.status == "completed" for v in verdicts)
    store = open_store(settings["store_url"])
    try:
        assert store.count() == count
    finally:
        store.close()
