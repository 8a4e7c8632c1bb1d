"""Configuration mistakes a real worker must surface, not hide: a model server refusing its API key, and
credentials that libraries would log at DEBUG.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from tests.services import stop_process
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

ACCESS_KEY_ID = "AKIALLAVAGUARDTEST42"  # moto accepts any key; this one is unique enough to grep for


def test_refused_api_key_fails_at_once_and_is_reported_at_start(fresh_redis: str, tmp_path: Path) -> None:
    with SGLangStandIn("127.0.0.1", 0, service_time_s=0.01, api_key="the-right-key") as standin:
        settings = {
            "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
            "sglang_api_key": "a-wrong-key",  # retries would wait 2, 4, 8 ... s each if this counted as transient
        }
        env = worker_env(**settings)
        with running_workers(env, tmp_path / "logs", count=1, concurrency=2) as (worker,):
            deadline = time.monotonic() + 60
            while "inference.api_key_refused" not in worker.output():
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.2)
            refused_at_start = standin.stats()["unauthorized_requests"]
            with ModerationClient(settings=load_settings(**settings)) as client:
                verdict = client.wait(client.submit(make_image("O1")), timeout=60)
            output = worker.output()
    assert verdict.status == "failed" and verdict.error is not None
    assert verdict.error.code == "inference_rejected" and "LLAVAGUARD_SGLANG_API_KEY" in verdict.error.message
    assert standin.stats()["unauthorized_requests"] == refused_at_start + 1, "one request, never retried"
    assert "moderation.retry" not in output
    start_line = next(line for line in output.splitlines() if "inference.api_key_refused" in line)
    assert '"level": "error"' in start_line and "the-right-key" not in output and "a-wrong-key" not in output


def test_debug_logs_of_an_s3_fetch_hold_no_access_key(
    fresh_redis: str, tmp_path: Path, s3_endpoint: str, s3: Any, bucket: str, standin: SGLangStandIn
) -> None:
    s3.put_object(Bucket=bucket, Key="cat.png", Body=make_image("O1"))
    settings = {
        "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "s3_endpoint_url": s3_endpoint, "log_level": "DEBUG", "s3_allowed_buckets": bucket,
    }
    env = {**worker_env(**settings), "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "worker", "--concurrency=2", "--loglevel=DEBUG"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        with ModerationClient(settings=load_settings(**settings)) as client:
            verdict = client.wait(client.submit(f"s3://{bucket}/cat.png"), timeout=60)
    finally:
        stop_process(proc, timeout_s=30)
    output = log.read_text(errors="replace")
    assert verdict.status == "completed", verdict.error
    assert '"level": "debug"' in output  # DEBUG really was on
    assert ACCESS_KEY_ID not in output and "Credential=" not in output
