"""`llavaguard health` against real worker processes: consuming -> 0; stopped, killed, starved, no Redis -> 1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from producers import ModerationClient
from tests import services
from tests.harness import WorkerProcess, running_workers, worker_env
from worker.celery_app import create_app
from worker.observability import registry
from worker.settings import load_settings
from worker.standin.palette import make_image


def settings_for(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "redis_url": redis_url, "sglang_url": f"http://127.0.0.1:{services.free_port()}",
        "store_url": f"sqlite:///{tmp_path}/v.db", "heartbeat_interval_s": "0.5",
    }


def health(env: dict[str, str], worker: WorkerProcess, *extra: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "producers.cli", "health", f"--hostname={worker.name}", *extra],
        env=env, capture_output=True, text=True, timeout=60,
    )
    return done.returncode, json.loads(done.stdout)


def health_becomes(
    want: int, env: dict[str, str], worker: WorkerProcess, *extra: str, within_s: float = 30.0
) -> dict[str, Any]:
    """Run the check until it answers `want` (the heartbeat takes a few intervals to expire or return)."""
    deadline = time.monotonic() + within_s
    while True:
        code, report = health(env, worker, *extra)
        if code == want:
            return report
        assert time.monotonic() < deadline, f"health stayed {code}: {report}"
        time.sleep(0.3)


def test_stopped_then_resumed_then_killed_worker(fresh_redis: str, tmp_path: Path) -> None:
    env = worker_env(**settings_for(fresh_redis, tmp_path))
    with running_workers(env, tmp_path, count=1, concurrency=2) as (worker,):
        report = health_becomes(0, env, worker)
        assert report["healthy"] is True and report["worker"] == worker.name
        worker.proc.send_signal(signal.SIGSTOP)
        try:
            report = health_becomes(1, env, worker)
            assert "no heartbeat" in report["reason"]
        finally:
            worker.proc.send_signal(signal.SIGCONT)
        health_becomes(0, env, worker)
        worker.kill()
        assert "no heartbeat" in health_becomes(1, env, worker)["reason"]


def test_worker_that_stopped_consuming_is_unhealthy(fresh_redis: str, tmp_path: Path) -> None:
    """Messages wait, slots are free, nothing arrives: what celery #8030-style wedges look like from outside."""
    settings = settings_for(fresh_redis, tmp_path)
    env = worker_env(**settings)
    app = create_app(load_settings(**settings))
    with running_workers(env, tmp_path, count=1, concurrency=2, queues="realtime") as (worker,):
        health_becomes(0, env, worker)
        replies = app.control.cancel_consumer("realtime", destination=[worker.name], reply=True, timeout=10)
        assert replies, "the worker acknowledged the control command"
        with ModerationClient(settings=load_settings(**settings)) as client:
            client.submit(make_image("O1"))
        report = health_becomes(1, env, worker, "--stall-s=1")
        assert "stopped consuming" in report["reason"]
        app.control.add_consumer("realtime", destination=[worker.name], reply=True, timeout=10)
        health_becomes(0, env, worker, "--stall-s=1")
    app.close()


def test_redis_gone_is_unhealthy(tmp_path: Path) -> None:
    with contextlib.ExitStack() as redis_up:
        url = redis_up.enter_context(services.redis_server(tmp_path))
        env = worker_env(**settings_for(url, tmp_path))
        with running_workers(env, tmp_path, count=1, concurrency=2) as (worker,):
            health_becomes(0, env, worker)
            redis_up.close()  # Redis stops; the worker keeps running
            code, report = health(env, worker)
            assert code == 1 and "Redis unreachable" in report["reason"]
            worker.kill()  # a warm shutdown would wait for the broker


def test_host_registry_forgets_dead_and_long_silent_workers(fresh_redis: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(fresh_redis)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    now = time.time()
    entries = {
        "alive@h": {"pid": os.getpid(), "seen_at": now},
        "killed@h": {"pid": int(finished.stdout), "seen_at": now},  # its process is gone
        "removed@h": {"pid": os.getpid(), "seen_at": now - registry.FORGET_AFTER_S - 1},  # silent too long
    }
    client.hset(registry.WORKERS_KEY + "h", mapping={k: json.dumps(v) for k, v in entries.items()})
    assert [r.worker for r in registry.registered(client, "h", now=now)] == ["alive@h", "killed@h"]
    assert sorted(registry.forget_dead(client, "h", now=now)) == ["killed@h", "removed@h"]
    assert [r.worker for r in registry.registered(client, "h", now=now)] == ["alive@h"]
    client.close()


def test_health_without_hostname_checks_this_hosts_worker(fresh_redis: str, tmp_path: Path) -> None:
    """The compose healthcheck: `llavaguard health` alone, one worker (any node name) on this host."""
    env = worker_env(**settings_for(fresh_redis, tmp_path))
    with running_workers(env, tmp_path, count=1, concurrency=2) as (worker,):
        code, report = health_alone(env)
        deadline = time.monotonic() + 30
        while code != 0 and time.monotonic() < deadline:
            time.sleep(0.3)
            code, report = health_alone(env)
        assert code == 0 and [w["worker"] for w in report["workers"]] == [worker.name]
        worker.kill()
        deadline = time.monotonic() + 30
        while code == 0:
            assert time.monotonic() < deadline, report
            time.sleep(0.3)
            code, report = health_alone(env)
        assert "no heartbeat" in report["reason"]


def health_alone(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "producers.cli", "health"], env=env, capture_output=True, text=True,
                          timeout=60)
    return done.returncode, json.loads(done.stdout)
