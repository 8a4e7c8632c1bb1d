"""Poison messages and bad batch items: a real worker on a private Redis keeps consuming and loses nothing.

Each message is written straight into Redis as an attacker with queue access would (issue 8, items 1 and 8).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import redis

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from tests.integration.test_metrics import scrape
from tests.services import free_port
from worker.queues import DEADLETTER_KEY, MODERATE_BATCH_TASK, MODERATE_TASK
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

APPLICATION_DATA = (
    '{"body":"eA==","content-encoding":"binary","content-type":"application/data","headers":{"lang":"py",'
    '"task":"llavaguard.moderate","id":"p1"},"properties":{"delivery_info":{"exchange":"","routing_key":'
    '"realtime"},"priority":0,"body_encoding":"base64","delivery_tag":"p1"}}'
)


def celery_message(task: str, args: list[Any], *, headers: dict[str, Any] | None = None,
                   body: bytes | None = None) -> bytes:
    """A Celery protocol-2 message as kombu's Redis transport stores it (json.dumps keeps lone surrogates
    as `\\udcXX` escapes, so they arrive in the worker as the producer wrote them)."""
    tag = uuid.uuid4().hex
    raw_body = body if body is not None else json.dumps([args, {}, {}]).encode()
    return json.dumps({
        "body": base64.b64encode(raw_body).decode(), "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": tag, **(headers or {})},
        "properties": {"delivery_info": {"exchange": "", "routing_key": "realtime"}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": tag},
    }).encode()


def gzip_bomb(inflated_bytes: int) -> bytes:
    """Zeros that zlib-inflate to `inflated_bytes` (1 GiB -> about 1 MB compressed)."""
    packer, chunk = zlib.compressobj(9), b"\0" * (16 * 1024 * 1024)
    parts = [packer.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    return b"".join([*parts, packer.flush()])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def deadletters(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange(DEADLETTER_KEY, 0, -1)]


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "producers.cli", "deadletter", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def wait_for(check: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def test_poison_messages_are_dead_lettered_and_the_worker_keeps_consuming(
    fresh_redis: str, standin: SGLangStandIn, tmp_path: Path
) -> None:
    port = free_port()
    settings = {"redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
                "metrics_port": str(port), "metrics_host": "127.0.0.1"}
    env = {**worker_env(**settings), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    r = redis.Redis.from_url(fresh_redis)
    bomb = celery_message(MODERATE_TASK, [], headers={"compression": "application/x-gzip"},
                          body=gzip_bomb(1024 * 1024 * 1024))
    assert len(bomb) < 3_000_000
    with running_workers(env, tmp_path, count=1, concurrency=4) as (worker,):
        client = ModerationClient(settings=load_settings(**settings))
        r.lpush("realtime", APPLICATION_DATA)
        r.lpush("realtime", b"garbage")
        r.lpush("realtime", bomb)
        r.lpush("realtime", celery_message("llavaguard.nope", [{"id": "unknown-1", "image": {"url": "x"}}]))
        r.lpush("realtime", celery_message(MODERATE_TASK, [{"id": "sur-url", "image": {"url": "https://a/\udc80"}}]))
        r.lpush("realtime", celery_message(
            MODERATE_TASK, [{"id": "sur-meta", "image": {"url": "https://a/b.png"}, "metadata": {"a": "\udc80"}}]))
        after = client.wait(client.submit(make_image("O4", size=(32, 32), fmt="PNG")), timeout=90)
        unknown = client.wait("unknown-1", timeout=60)
        sur_url, sur_meta = client.wait("sur-url", timeout=60), client.wait("sur-meta", timeout=60)
        wait_for(lambda: len(deadletters(r)) >= 4)
        rss = rss_mib(worker.proc.pid)
        samples = scrape(port)
        assert worker.proc.poll() is None, "the worker died"
        client.close()

    assert after.status == "completed" and after.category == "O4: Nudity Content"
    for verdict in (unknown, sur_url, sur_meta):
        assert verdict.status == "failed" and verdict.error and verdict.error.code == "request_invalid", verdict
    assert "dead-lettered (unknown_task" in (unknown.error.message if unknown.error else "")
    assert rss < 800, f"worker RSS {rss:.0f} MiB: the bomb was inflated"
    letters = deadletters(r)
    assert sorted(e["reason"] for e in letters) == ["compressed", "content_type", "not_json", "unknown_task"]
    assert all(e["queue"] == "realtime" and e["id"] and e["time"] and not e["truncated"] for e in letters)
    for reason in ("compressed", "content_type", "not_json", "unknown_task"):
        assert samples[("llavaguard_dead_letters_total", frozenset({("reason", reason)}))] == 1
    assert "garbage" not in Path(tmp_path / "worker-0.log").read_text(), "raw bytes in the log"

    # The command line: list (newest first, no raw), show, replay, purge.
    cli_env = {**env, "LLAVAGUARD_METRICS_PORT": "0"}
    listed = [json.loads(line) for line in cli(cli_env, "list").splitlines()]
    assert [e["id"] for e in listed] == [e["id"] for e in letters] and all("raw" not in e for e in listed)
    garbage = next(e for e in listed if e["reason"] == "not_json")
    assert json.loads(cli(cli_env, "show", garbage["id"]))["raw"] == "garbage"
    cli(cli_env, "replay", garbage["id"])
    assert garbage["id"] not in [e["id"] for e in deadletters(r)]
    assert r.lrange("realtime", 0, -1) == [b"garbage"]
    with running_workers(env | {"LLAVAGUARD_METRICS_PORT": "0"}, tmp_path / "again", count=1, concurrency=2):
        wait_for(lambda: r.llen("realtime") == 0 and len(deadletters(r)) == 4)  # still poison: back in the list
    assert cli(cli_env, "purge", "--reason", "not_json").strip() == "1"
    assert cli(cli_env, "purge").strip() == "3"
    assert r.llen(DEADLETTER_KEY) == 0


def test_one_bad_batch_item_never_affects_its_siblings(tmp_path: Path, fresh_redis: str) -> None:
    """A 129-char id, bad metadata, a non-dict item, and two good items of which one meets a 503 first."""
    with SGLangStandIn("127.0.0.1", 0, service_time_s=0.01, fail_first=1) as standin:
        settings = {"redis_url": fresh_redis, "sglang_url": standin.url,
                    "store_url": f"sqlite:///{tmp_path}/v.db", "retry_backoff_base_s": "0.2"}
        env = {**worker_env(**settings), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        image = base64.b64encode(make_image("O2", size=(32, 32), fmt="PNG")).decode()
        items: list[Any] = [
            {"id": "x" * 129, "image": {"data": image}},
            {"id": "bad-meta", "image": {"data": image}, "metadata": {"k": "\udc80"}},
            "garbage",
            {"id": "good-1", "image": {"data": image}},
            {"id": "good-2", "image": {"data": image}},
        ]
        r = redis.Redis.from_url(fresh_redis)
        with running_workers(env, tmp_path, count=1, concurrency=2) as (worker,):
            client = ModerationClient(settings=load_settings(**settings))
            r.lpush("bulk", celery_message(MODERATE_BATCH_TASK, [items]))
            good = [client.wait(i, timeout=90) for i in ("good-1", "good-2")]
            bad_meta = client.wait("bad-meta", timeout=60)
            wait_for(lambda: len(deadletters(r)) >= 2)
            log = worker.output()
            client.close()
    assert all(v.status == "completed" and v.category == "O2: Violence, Harm, or Cruelty" for v in good), good
    assert "moderation.batch_retry" in log, "the 503 was not retried"
    assert bad_meta.status == "failed" and bad_meta.error and bad_meta.error.code == "request_invalid"
    assert bad_meta.metadata == {"k": "?"}
    letters = deadletters(r)
    assert sorted(e["reason"] for e in letters) == ["item_invalid", "item_invalid"]
    assert any("x" * 129 in e["raw"] for e in letters) and any(e["raw"] == '"garbage"' for e in letters)
