"""Issue 9 item 1: Flower and `celery inspect`, knowing only the broker URL, see the real workers.

Workers on a private redis-server, where a worker from before the fix left binding members written with `:`
and a producer queued a moderation on `realtime:3`. Flower runs as compose runs it (the flower service's own
entrypoint, with basic auth); `celery inspect` runs both with our app (`-A worker.tasks`) and with nothing but
`--broker`, which is what failed in the issue.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import yaml

from producers import ModerationClient
from tests.harness import WorkerProcess, worker_env
from tests.services import free_port, stop_process
from worker.queues import MODERATE_TASK
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = "ops:flower-test-password"
CONTROL_ERROR = "Control command error"


def compose_flower_command() -> list[str]:
    """The flower service's entrypoint as the container runs it (compose turns `$$` into `$`)."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["flower"]
    return [part.replace("$$", "$") for part in service["entrypoint"]]


def flower_env(broker_url: str, port: int, basic_auth: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "LLAVAGUARD_", "CELERY_"))}
    env.update(CELERY_BROKER_URL=broker_url, FLOWER_PORT=str(port), FLOWER_ADDRESS="127.0.0.1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    if basic_auth is not None:
        env["FLOWER_BASIC_AUTH"] = basic_auth
    return env


@contextlib.contextmanager
def running_flower(broker_url: str, log_path: Path) -> Iterator[int]:
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(compose_flower_command(), env=flower_env(broker_url, port, CREDENTIALS),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is None and get(port, "/api/workers")[0] == 200, 30,
                       lambda: f"flower not up:\n{log_path.read_text(errors='replace')}")
            yield port
        finally:
            stop_process(proc)


def get(port: int, path: str, auth: str | None = CREDENTIALS) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def wait_until(check: Any, timeout_s: float, why: Any = lambda: "condition not reached") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, why()
        time.sleep(0.2)


class CeleryCommand:
    """`celery ARGS` started now, its output read by `result()`: several run while the test goes on."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "celery", *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def result(self) -> str:
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, out
        return out


def test_flower_and_celery_inspect_see_the_workers_with_only_the_broker_url(
    fresh_redis: str, standin: SGLangStandIn, tmp_path: Path
) -> None:
    settings = {"redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db"}
    env = {**worker_env(**settings), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    r = redis.Redis.from_url(fresh_redis)
    # Left by the workers before the fix: bindings with `:` (unreadable to every other client) ...
    r.sadd("_kombu.binding.realtime", "realtime::realtime")
    r.sadd("_kombu.binding.celery.pidbox", "::old@host.celery.pidbox")
    client = ModerationClient(settings=load_settings(**settings))
    # ... and a moderation waiting on a priority list, under the name producers in any language push to.
    queued = client.submit(make_image("O1", size=(32, 32), fmt="PNG"), priority=6)
    assert r.llen("realtime:3") == 1

    with contextlib.ExitStack() as stack:
        everything = WorkerProcess(env, tmp_path / "w-all.log", concurrency=2, queues="realtime,bulk,webhooks")
        bulk_only = WorkerProcess(env, tmp_path / "w-bulk.log", concurrency=2, queues="bulk")
        for worker in (everything, bulk_only):
            stack.callback(worker.stop)
        port = stack.enter_context(running_flower(fresh_redis, tmp_path / "flower.log"))  # meanwhile
        for worker in (everything, bulk_only):
            worker.wait_ready()
        assert client.wait(queued, timeout=60).status == "completed"
        assert not [m for m in r.smembers("_kombu.binding.realtime") if b"\x06\x16" not in m]

        plain = CeleryCommand({k: v for k, v in env.items() if not k.startswith("LLAVAGUARD_")},
                       f"--broker={fresh_redis}", "inspect", "ping", "--timeout=2")
        ours = CeleryCommand(env, "-A", "worker.tasks", "inspect", "active", "--timeout=2")
        names = {everything.name, bulk_only.name}
        # A live broadcast each time; Flower waits 1 s for replies, which a loaded machine may miss once.
        wait_until(lambda: set(get(port, "/api/workers?refresh=1")[1] or {}) == names, 15,
                   lambda: f"Flower lists {get(port, '/api/workers')[1]}")
        status, workers = get(port, "/api/workers")
        assert status == 200 and set(workers) == names, workers
        queues = {name: [q["name"] for q in info["active_queues"]] for name, info in workers.items()}
        assert queues == {everything.name: ["realtime", "bulk", "webhooks"], bulk_only.name: ["bulk"]}
        assert get(port, "/api/workers", auth=None)[0] == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as scrape:  # Prometheus's job
            assert b"flower_worker_online" in scrape.read()
        assert get(port, "/api/tasks", auth="ops:wrong")[0] == 401

        moderation = client.submit(make_image("O4", size=(32, 32), fmt="PNG"))
        assert client.wait(moderation, timeout=60).status == "completed"

        def moderated() -> bool:
            tasks = get(port, f"/api/tasks?taskname={MODERATE_TASK}")[1] or {}
            return any(t["state"] == "SUCCESS" and t["worker"] == everything.name for t in tasks.values())
        wait_until(moderated, 20, lambda: f"no moderation in Flower: {get(port, '/api/tasks')[1]}")
        client.close()
        for answer in (plain.result(), ours.result()):
            assert f"{everything.name}: OK" in answer and f"{bulk_only.name}: OK" in answer, answer

    for worker in (everything, bulk_only):
        assert CONTROL_ERROR not in worker.output(), worker.output()[-3000:]


def test_compose_flower_refuses_to_start_without_credentials() -> None:
    for basic_auth in (None, "", "user-without-password", ":"):
        env = flower_env("redis://127.0.0.1:9/0", free_port(), basic_auth)
        done = subprocess.run(compose_flower_command(), env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 64 and "set FLOWER_BASIC_AUTH=user:password" in done.stderr, (basic_auth, done)
