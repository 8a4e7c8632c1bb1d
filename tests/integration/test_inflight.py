"""One worker process keeps a window of requests in flight against the model server."""

from __future__ import annotations

from pathlib import Path

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn


def test_a_single_worker_process_holds_its_window_in_flight(fresh_redis: str, tmp_path: Path) -> None:
    with SGLangStandIn("127.0.0.1", 0, max_running=64, service_time_s=0.5) as server:
        settings = {"redis_url": fresh_redis, "sglang_url": server.url, "store_url": f"sqlite:///{tmp_path}/v.db",
                    "inflight_window": "12"}
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=None):
            with ModerationClient(settings=load_settings(**settings)) as client:
                ids = [client.submit(make_image("O5"), metadata={"n": n}) for n in range(36)]
                verdicts = [client.wait(i, timeout=60) for i in ids]
        stats = server.stats()
    assert all(v.status == "completed" for v in verdicts)
    assert stats["peak_running"] == 12, "the window (default concurrency) is what one process holds in flight"
