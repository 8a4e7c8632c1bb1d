"""Real Celery worker processes and loopback HTTP servers for the integration tests."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.services import stop_process

WORKER_READY_MARK = "ready."
LOOPBACK_DISCARD = "http://127.0.0.1:9"


def worker_env(**settings: str) -> dict[str, str]:
    """The environment of a worker process: this one's, minus stray LLAVAGUARD_*, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAVAGUARD_")}
    env.update({f"LLAVAGUARD_{k.upper()}": v for k, v in settings.items()})
    env.setdefault("LLAVAGUARD_S3_ENDPOINT_URL", LOOPBACK_DISCARD)  # never let a test reach a real S3
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("LLAVAGUARD_METRICS_PORT", "0")  # off unless a test asks: parallel workers would share a port
    env.setdefault("LLAVAGUARD_API_METRICS_PORT", "0")  # the same for `llavaguard api`
    env.setdefault("LLAVAGUARD_MATCH", "off")  # tests count model requests per image; matching tests turn it on
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """`llavaguard worker` as a child process, its output in a log file."""

    def __init__(
        self, env: dict[str, str], log_path: Path, *, concurrency: int | None = 8, queues: str = "realtime,bulk",
        pool: str | None = None,
    ):
        self.log_path = log_path
        self.name = f"w{uuid.uuid4().hex[:8]}@test"
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "worker", f"--queues={queues}", f"--hostname={self.name}",
             "--loglevel=INFO", *([f"--concurrency={concurrency}"] if concurrency else []),
             *([f"--pool={pool}"] if pool else [])],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            if WORKER_READY_MARK in self.output():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready within {timeout_s}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acks; whatever it held must be redelivered."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=30)
        self._log.close()


@contextlib.contextmanager
def running_workers(
    env: dict[str, str], log_dir: Path, count: int = 2, **kwargs: object
) -> Iterator[list[WorkerProcess]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = [WorkerProcess(env, log_dir / f"worker-{i}.log", **kwargs) for i in range(count)]  # type: ignore[arg-type]
    try:
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class LoopbackHTTPServer:
    """A threaded HTTP server on a loopback address; `routes` maps a path to a handler function."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: list[str] = []
        outer = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                handler = outer.routes.get(self.path.split("?", 1)[0])
                if handler is None:
                    self.send_error(404)
                    return
                handler(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), _Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def serve_bytes(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        def handler(req: http.server.BaseHTTPRequestHandler) -> None:
            req.send_response(200)
            req.send_header("Content-Type", content_type)
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)

        self.routes[path] = handler
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
