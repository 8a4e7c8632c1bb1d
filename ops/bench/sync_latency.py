"""Synchronous-path benchmark: what `POST /v1/moderations?wait=` adds to the model's own time.

    python -m ops.bench.sync_latency [--max-running 8] [--service-time-s 0.2] [--load 0.5] [--seconds 20]

The stand-in serves `--max-running` requests at once, each taking `--service-time-s` (ceiling
max_running / service_time). Requests arrive open-loop (evenly spaced) at `--load` times that ceiling; each is
one `POST /v1/moderations?wait=30` to a real API (uvicorn) in front of one real worker process, image fetched
from a loopback server. Overhead = client-observed latency minus `service_time_s`: submit, queue, fetch, store,
the worker's publish and the API's wake-up. Also measured the same way: `AsyncModerationClient.moderate()`.

Everything is real except the model: private redis-server, SQLite verdicts, loopback only. `t-window`'s
`ops/bench/throughput.py` imports `latency_figures`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx

from producers.async_client import AsyncModerationClient
from tests.api_server import API_KEY
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from tests.services import free_port, redis_server
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn


def latency_figures(tmp: Path, *, max_running: int = 8, service_time_s: float = 0.2, load: float = 0.5,
                    seconds: float = 20.0, concurrency: int = 32) -> dict[str, dict[str, float]]:
    """{"api": {...}, "sdk": {...}}: p50/p99/max overhead in ms beyond `service_time_s`, and the rate offered."""
    rate = load * max_running / service_time_s
    images = LoopbackHTTPServer()
    url = images.serve_bytes("/i.jpg", make_image("NA", size=(256, 192), fmt="JPEG"), "image/jpeg")
    with redis_server(tmp) as redis_url, SGLangStandIn("127.0.0.1", 0, max_running=max_running,
                                                       service_time_s=service_time_s) as standin:
        settings = {"redis_url": redis_url, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp}/v.db",
                    "allowed_networks": "127.0.0.1/32", "allow_http": "true", "api_keys": API_KEY,
                    "log_level": "WARNING", "inflight_window": str(concurrency)}
        env = worker_env(**settings)
        with running_workers(env, tmp / "logs", count=1, concurrency=concurrency), _api_process(env, tmp) as base:
            figures = asyncio.run(_measure(base, url, load_settings(**settings), rate, seconds, service_time_s))
    images.close()
    return figures


@contextmanager
def _api_process(env: dict[str, str], tmp: Path) -> Iterator[str]:
    """`llavaguard api` in a process of its own (not sharing this one's GIL with the load generator)."""
    port = free_port()
    with (tmp / "api.log").open("wb") as log:
        api = subprocess.Popen([sys.executable, "-m", "producers.cli", "api", "--host", "127.0.0.1", "--port",
                                str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start: {(tmp / 'api.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        api.terminate()
        api.wait(30)


async def _measure(base: str, url: str, settings: object, rate: float, seconds: float,
                   service_time_s: float) -> dict[str, dict[str, float]]:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"},
                                 timeout=60, limits=httpx.Limits(max_connections=1000)) as http, \
            AsyncModerationClient(settings=settings) as sdk:  # type: ignore[arg-type]
        async def via_api() -> float:
            answer = await http.post("/v1/moderations?wait=30", json={"image_url": url})
            if answer.status_code != 200:
                raise RuntimeError(f"expected the verdict, got {answer.status_code}: {answer.text[:200]}")
            verdict = answer.json()
            return (datetime.fromisoformat(verdict["completed_at"])
                    - datetime.fromisoformat(verdict["created_at"])).total_seconds()

        async def via_sdk() -> float:
            verdict = await sdk.moderate(url, timeout=30)
            return (verdict.completed_at - verdict.created_at).total_seconds()

        await _open_loop(via_api, rate, 1.0)  # warm-up: connections, store tables, subscription
        api = await _open_loop(via_api, rate, seconds)
        sdk_figures = await _open_loop(via_sdk, rate, seconds)
    return {"api": _summary(api, service_time_s, rate), "sdk": _summary(sdk_figures, service_time_s, rate)}


async def _open_loop(call: Callable[[], Awaitable[float]], rate: float, seconds: float) -> list[tuple[float, float]]:
    """Start `call` every 1/rate seconds for `seconds`; each call's (latency, created -> completed)."""
    latencies: list[tuple[float, float]] = []

    async def timed() -> None:
        started = time.perf_counter()
        stored_after = await call()
        latencies.append((time.perf_counter() - started, stored_after))

    tasks, start = [], time.perf_counter()
    for n in range(max(1, int(rate * seconds))):
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(timed()))
    await asyncio.gather(*tasks)
    return latencies


def _summary(latencies: list[tuple[float, float]], service_time_s: float, rate: float) -> dict[str, float]:
    """Overhead beyond the model, and the part of it after the verdict was stored (publish, wake, answer)."""
    overhead = sorted((total - service_time_s) * 1000 for total, _ in latencies)
    after = sorted((total - stored) * 1000 for total, stored in latencies)
    return {"requests": len(overhead), "rate_per_s": rate, "p50_ms": _pct(overhead, 0.5),
            "p99_ms": _pct(overhead, 0.99), "max_ms": overhead[-1],
            "outside_worker_p50_ms": _pct(after, 0.5), "outside_worker_p99_ms": _pct(after, 0.99)}


def _pct(values: list[float], q: float) -> float:
    return statistics.median(values) if q == 0.5 else values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-running", type=int, default=8)
    parser.add_argument("--service-time-s", type=float, default=0.2)
    parser.add_argument("--load", type=float, default=0.5, help="fraction of the stand-in's ceiling offered")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        figures = latency_figures(Path(folder), max_running=args.max_running, service_time_s=args.service_time_s,
                                  load=args.load, seconds=args.seconds)
    ceiling = args.max_running / args.service_time_s
    print(f"stand-in {args.max_running} at once x {args.service_time_s}s (ceiling {ceiling:.0f}/s), "
          f"offered {args.load:.0%} of it, 256x192 JPEG by loopback URL, 1 worker, 1 API process")
    for name, shown in (("POST ?wait=", "api"), ("SDK moderate()", "sdk")):
        f = figures[shown]
        print(f"  {name:<15} {f['requests']:>5.0f} requests at {f['rate_per_s']:.0f}/s: overhead beyond the model "
              f"p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, max {f['max_ms']:.1f} ms; of it outside "
              f"created_at..completed_at (submit, publish, wake-up, answer) p50 {f['outside_worker_p50_ms']:.1f} ms, "
              f"p99 {f['outside_worker_p99_ms']:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
