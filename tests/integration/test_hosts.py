"""Several plain `llavaguard worker` processes on one host, as an operator starts them by hand.

With default metrics settings (one port, given explicitly so that parallel test runs do not meet) they all
run and consume, one serves the sum of all, a survivor takes the port over without losing counts, each has
its own node name, and `llavaguard health` checks every one of them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from producers import ModerationClient
from tests.harness import WORKER_READY_MARK, worker_env
from tests.services import free_port, stop_process
from worker.observability.registry import WORKERS_KEY
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

HOST = socket.gethostname()


class PlainWorker:
    """`llavaguard worker` without --hostname or metrics overrides: the node name and port are its defaults."""

    def __init__(self, env: dict[str, str], log_path: Path, pool: str) -> None:
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "producers.cli", "worker", "--queues=realtime", "--concurrency=2",
                 f"--pool={pool}"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.name = f"llavaguard-{self.proc.pid}@{HOST}"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while WORKER_READY_MARK not in self.output():
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.output()}"
            time.sleep(0.1)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def received(self) -> int:
        return self.output().count('"event": "task.received"')


@contextmanager
def plain_workers(env: dict[str, str], log_dir: Path, count: int, pool: str) -> Iterator[list[PlainWorker]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    workers: list[PlainWorker] = []
    try:
        for i in range(count):  # one after the other: the first one binds the metrics port
            workers.append(PlainWorker(env, log_dir / f"worker-{len(list(log_dir.iterdir()))}-{i}.log", pool))
            workers[-1].wait_ready()
        yield workers
    finally:
        for worker in workers:
            stop_process(worker.proc, timeout_s=30)


def verdict_counts(port: int) -> float | None:
    """The sum of `llavaguard_verdicts_total` on the host's endpoint, None while nobody serves it."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "llavaguard_verdicts_total")


def counts_become(port: int, want: float, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while (seen := verdict_counts(port)) != want:
        assert time.monotonic() < deadline, f"metrics report {seen} verdicts, expected {want}"
        time.sleep(0.5)


def health(env: dict[str, str], *extra: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "producers.cli", "health", *extra],
                          env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def health_becomes(want: int, env: dict[str, str], *extra: str, within_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        code, report = health(env, *extra)
        if code == want:
            return report
        assert time.monotonic() < deadline, f"health stayed {code}: {report}"
        time.sleep(0.3)


def judge(settings: dict[str, str], count: int) -> None:
    with ModerationClient(settings=load_settings(**settings)) as client:
        ids = [client.submit(make_image("O1")) for _ in range(count)]
        assert all(client.wait(i, timeout=120).status == "completed" for i in ids)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_workers_on_one_host_share_metrics_names_and_health(pool: str, fresh_redis: str, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "tmp").mkdir()
    with SGLangStandIn("127.0.0.1", 0, max_running=16, service_time_s=0.3) as standin:
        settings = {
            "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
            "metrics_port": str(port), "heartbeat_interval_s": "0.5",
        }
        # TMPDIR: the default shared metrics directory goes under the test's own temp dir.
        env = {**worker_env(**settings), "TMPDIR": str(tmp_path / "tmp")}
        with plain_workers(env, tmp_path / "logs", count=2, pool=pool) as (first, second):
            judge(settings, 20)
            assert first.received() > 0 and second.received() > 0, "both workers consume"
            counts_become(port, 20)  # served by one of them, counting both
            assert "metrics.port_taken" in second.output()
            registered = redis.Redis.from_url(fresh_redis).hgetall(WORKERS_KEY + HOST)
            assert {name.decode() for name in registered} == {first.name, second.name}
            assert health_becomes(0, env)["reason"].startswith("2 worker(s)")

            first.proc.send_signal(signal.SIGKILL)  # the one serving the metrics
            first.proc.wait(10)
            counts_become(port, 20)  # the survivor took the port over, with the dead worker's counts
            assert "metrics.took_over" in second.output()
            report = health_becomes(1, env)
            assert first.name in report["reason"] and "no heartbeat" in report["reason"]
            assert health(env, f"--hostname={second.name}")[0] == 0

            judge(settings, 5)
            counts_become(port, 25)
            with plain_workers(env, tmp_path / "logs", count=1, pool=pool) as (restarted,):
                assert restarted.name not in (first.name, second.name)
                report = health_becomes(0, env)  # a worker starting on the host forgets the dead one
                assert {w["worker"] for w in report["workers"]} == {second.name, restarted.name}
        assert health(env)[1]["reason"].startswith("no worker registered")  # stopped cleanly: deregistered
    shared = tmp_path / "tmp" / f"llavaguard-metrics-{os.getuid()}-{port}"
    assert shared.is_dir() and not list(shared.glob("*.db")), "the last worker out clears the shared directory"
