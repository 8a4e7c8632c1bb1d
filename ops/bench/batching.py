"""Batching benchmark: throughput of ONE worker process against an SGLang stand-in of fixed capacity.

The stand-in serves `--max-running` requests at once, each taking `--service-time-s`, like a GPU server
that batches continuously; so its ceiling is max_running / service_time. The worker keeps a window of
requests in flight (LLAVAGUARD_INFLIGHT_WINDOW, one thread per slot); this prints moderations/s per window.

    .venv/bin/python -m ops.bench.batching [--images 400] [--windows 1,4,8,16,32]

Everything is real except the model: a private redis-server, a real `llavaguard worker` process, the
stand-in over HTTP on loopback, SQLite for verdicts. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from tests.services import redis_server
from worker.standin.palette import PALETTE, make_image
from worker.standin.sglang_standin import SGLangStandIn


def run_once(window: int, images: list[bytes], max_running: int, service_time_s: float, tmp: Path) -> dict[str, float]:
    run_dir = tmp / f"w{window}"
    run_dir.mkdir()
    store_url = f"sqlite:///{run_dir}/verdicts.db"
    with redis_server(run_dir) as redis_url, SGLangStandIn(
        "127.0.0.1", 0, max_running=max_running, service_time_s=service_time_s
    ) as standin:
        env = worker_env(redis_url=redis_url, sglang_url=standin.url, store_url=store_url,
                         inflight_window=str(window), log_level="WARNING")
        with running_workers(env, run_dir, count=1, concurrency=window), ModerationClient(
            redis_url=redis_url, store_url=store_url
        ) as client:
            client.wait(client.submit(images[0]), timeout=60)  # warm-up: connections, model name, migrations
            start = time.perf_counter()
            ids = [client.submit(image) for image in images]
            for moderation_id in ids:
                client.wait(moderation_id, timeout=600)
            elapsed = time.perf_counter() - start
        peak = float(standin.stats()["peak_running"])
    return {"window": window, "seconds": elapsed, "per_s": len(images) / elapsed, "peak_in_flight": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--windows", default="1,4,8,16,32")
    parser.add_argument("--max-running", type=int, default=32)
    parser.add_argument("--service-time-s", type=float, default=0.2)
    args = parser.parse_args()
    codes = sorted(PALETTE)
    images = [make_image(codes[i % len(codes)], size=(256, 192), fmt="JPEG") for i in range(args.images)]
    ceiling = args.max_running / args.service_time_s
    print(f"stand-in capacity: {args.max_running} concurrent x {args.service_time_s}s -> ceiling {ceiling:.0f}/s")
    print(f"{args.images} images (256x192 JPEG, inline), 1 worker process, threads pool")
    print(f"{'window':>6} {'seconds':>8} {'moderations/s':>14} {'% of ceiling':>13} {'peak in flight':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for window in (int(w) for w in args.windows.split(",")):
            r = run_once(window, images, args.max_running, args.service_time_s, Path(tmp))
            print(f"{window:>6} {r['seconds']:>8.2f} {r['per_s']:>14.1f} {100 * r['per_s'] / ceiling:>12.0f}% "
                  f"{r['peak_in_flight']:>15.0f}", flush=True)


if __name__ == "__main__":
    main()
