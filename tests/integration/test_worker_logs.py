"""A real worker's stdout: JSON lines only, every line of a moderation carrying its ids, no image bytes, no secrets.

Run at DEBUG, where Celery logs task arguments (the base64 image inside the message): the redaction must hold.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from producers import ModerationClient
from tests.harness import worker_env
from tests.services import stop_process
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

API_KEY = "sk-llavaguard-test-4c1f9e0d2b7a"
AWS_SECRET = "aws-secret-7d3e91c0b5a24f68"
BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{100,}")


def run_worker(env: dict[str, str], tmp_path: Path, pool: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "worker", "--concurrency=4", "--hostname=logs@test",
             f"--pool={pool}", "--loglevel=DEBUG"], env=env, stdout=stdout, stderr=stderr,
        )
    deadline = time.monotonic() + 60
    while "ready." not in out.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.1)
    return proc, out, err


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_worker_logs_are_bound_json_without_images_or_secrets(pool: str, fresh_redis: str, tmp_path: Path) -> None:
    # Big enough that Celery cuts its argument repr mid-image: a cut base64 run must not leak either.
    images = [make_image(code, size=(256, 256), fmt="JPEG") for code in ("O1", "O6", "NA")]
    with SGLangStandIn("127.0.0.1", 0, max_running=8, service_time_s=0.01, fail_first=1, api_key=API_KEY) as server:
        settings = {
            "redis_url": fresh_redis, "sglang_url": server.url, "sglang_api_key": API_KEY,
            "store_url": f"sqlite:///{tmp_path}/v.db", "log_level": "DEBUG",
            "retry_backoff_base_s": "0.2", "retry_backoff_max_s": "1",
        }
        env = {**worker_env(**settings), "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
        proc, out, err = run_worker(env, tmp_path, pool)
        try:
            with ModerationClient(settings=load_settings(**settings)) as client:
                ids = [client.submit(image) for image in [*images, b"not an image at all"]]
                verdicts = [client.wait(i, timeout=60) for i in ids]
        finally:
            stop_process(proc, timeout_s=30)
    assert [v.status for v in verdicts] == ["completed"] * 3 + ["failed"]
    text = out.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert all(isinstance(line, dict) and "event" in line and "level" in line for line in lines)

    task_of = {line["moderation_id"]: line["task_id"] for line in lines if line["event"] == "task.received"}
    assert set(task_of) == set(ids)
    for moderation_id, task_id in task_of.items():
        own = [line for line in lines if line.get("moderation_id") == moderation_id]
        assert any(line["event"] == "moderation.stored" for line in own)
        assert all(line.get("task_id") == task_id for line in own)
        mentioning = [line for line in lines if task_id in line["event"]]  # Celery's own lines about this task
        assert mentioning and all(_ids(line) == (moderation_id, task_id) for line in mentioning)
    assert any("retry" in line["event"].lower() and line.get("moderation_id") for line in lines)

    everything = text + err.read_text()
    for image in images:
        encoded = base64.b64encode(image).decode()
        assert encoded[40:100] not in everything
    assert not BASE64_RUN.search(text)
    assert API_KEY not in everything and AWS_SECRET not in everything


def _ids(line: dict[str, Any]) -> tuple[Any, Any]:
    return line.get("moderation_id"), line.get("task_id")
