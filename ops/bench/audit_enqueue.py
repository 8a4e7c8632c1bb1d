"""Bulk audit benchmark: enqueue rate, Redis bytes per queued image, and bounded Redis during a huge audit.

    python -m ops.bench.audit_enqueue --images 50000                 # enqueue only, no worker
    python -m ops.bench.audit_enqueue --images 1000000 --drain-s 60  # plus a worker draining, Redis sampled

Enqueue: a `.txt` manifest of `--images` https URLs (never fetched: no worker runs) audited with `--no-wait`
and a backlog above the dataset, so everything is enqueued; prints images/s (planning and publishing; the
progress bar's counting pass apart), `used_memory` (INFO) grown per queued image, and `MEMORY USAGE` of the
`bulk` list and the audit's queued record per image.

Drain (`--drain-s`): a manifest of loopback http URLs (one tiny PNG served for every path), `llavaguard audit`
as a child process with the default backlog (`LLAVAGUARD_AUDIT_BACKLOG`), one `llavaguard worker` against the
stand-in at high capacity; Redis `used_memory` is sampled every 0.5 s for `--drain-s` seconds, then the audit
is interrupted (Ctrl-C, resumable) and the peak printed: it follows the backlog, not the dataset.

Everything is real except the model: a private redis-server, SQLite verdicts, loopback only. `t-window`'s
`ops/bench/throughput.py` imports `enqueue_figures` and `drain_figures`.
"""

from __future__ import annotations

import argparse
import http.server
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from producers.bulk.audit import AuditOptions, run_audit
from producers.bulk.sources import ManifestSource, count
from tests.harness import running_workers, worker_env
from tests.services import redis_server
from worker.queues import AUDIT_QUEUED_KEY, BULK_QUEUE
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

NAME = "bench"


def write_manifest(path: Path, images: int, base: str) -> Path:
    with path.open("w") as out:
        for n in range(images):
            out.write(f"{base}/part{n % 100:02d}/img{n:08d}.jpg\n")
    return path


def enqueue_figures(images: int, tmp: Path, *, batch_size: int = 64) -> dict[str, float]:
    """Enqueue `images` manifest lines with no worker; the rate and Redis bytes per queued image."""
    manifest = write_manifest(tmp / "manifest.txt", images, "https://images.example.com/datasets/laion-sample")
    with redis_server(tmp) as redis_url:
        broker = redis.Redis.from_url(redis_url)
        settings = load_settings(redis_url=redis_url, store_url=f"sqlite:///{tmp}/verdicts.db",
                                 audit_batch_size=batch_size, audit_backlog=images + batch_size)
        options = AuditOptions(source=str(manifest), wait=False, progress=False, name=NAME)
        run_audit(settings, AuditOptions(source=str(write_manifest(tmp / "warm.txt", 1, "https://w.example.com")),
                                         wait=False, progress=False, name="warm"))  # id secret, store tables
        broker.delete(BULK_QUEUE, AUDIT_QUEUED_KEY + "warm")
        before = int(broker.info("memory")["used_memory"])
        started = time.perf_counter()
        counting = _timed(lambda: count(ManifestSource(manifest)))
        summary = run_audit(settings, options, log=open("/dev/null", "w"))  # noqa: SIM115
        elapsed = time.perf_counter() - started
        used = int(broker.info("memory")["used_memory"]) - before
        lists = int(broker.memory_usage(BULK_QUEUE) or 0) + int(broker.memory_usage(AUDIT_QUEUED_KEY + NAME) or 0)
        messages = int(broker.llen(BULK_QUEUE))
    assert summary.enqueued == images, summary.lines()
    planning = elapsed - 2 * counting  # run_audit counts the source once too; neither pass is enqueueing
    return {"images": images, "messages": messages, "seconds": elapsed, "count_pass_s": counting,
            "enqueue_per_s": images / planning, "end_to_end_per_s": images / elapsed,
            "used_memory_per_image_b": used / images, "memory_usage_per_image_b": lists / images}


def drain_figures(images: int, tmp: Path, *, drain_s: float = 60.0, backlog: int | None = None,
                  max_running: int = 512, service_time_s: float = 0.01, concurrency: int = 64) -> dict[str, float]:
    """An audit of `images` URLs with one worker draining for `drain_s` seconds; peak Redis memory."""
    with _any_path_server(make_image("NA", size=(32, 32))) as base, redis_server(tmp) as redis_url, \
            SGLangStandIn("127.0.0.1", 0, max_running=max_running, service_time_s=service_time_s) as standin:
        manifest = write_manifest(tmp / "drain.txt", images, base)
        settings = {"redis_url": redis_url, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp}/drain.db",
                    "allowed_networks": "127.0.0.1/32", "allow_http": "true", "log_level": "WARNING",
                    "inflight_window": str(concurrency)}
        if backlog is not None:
            settings["audit_backlog"] = str(backlog)
        env = worker_env(**settings)
        broker = redis.Redis.from_url(redis_url)
        baseline = int(broker.info("memory")["used_memory"])
        with running_workers(env, tmp / "logs", count=1, concurrency=concurrency):
            with (tmp / "audit.log").open("wb") as log:
                audit = subprocess.Popen([sys.executable, "-m", "producers.cli", "audit", str(manifest), "--name",
                                          NAME, "--no-progress"], env=env, stdout=log, stderr=subprocess.STDOUT)
            peak, samples, started = baseline, [], time.monotonic()
            while time.monotonic() - started < drain_s and audit.poll() is None:
                used = int(broker.info("memory")["used_memory"])
                peak = max(peak, used)
                samples.append(used)
                time.sleep(0.5)
            judged_in_window = standin.stats()["total_requests"]
            audit.send_signal(signal.SIGINT)
            audit.wait(60)
            queued_messages = int(broker.llen(BULK_QUEUE))
    third = max(1, len(samples) // 3)
    return {"images": images, "drain_s": drain_s, "judged": float(judged_in_window),
            "judged_per_s": judged_in_window / drain_s, "baseline_mb": baseline / 1e6,
            "peak_mb": peak / 1e6, "peak_growth_mb": (peak - baseline) / 1e6,
            "first_third_peak_mb": max(samples[:third], default=0) / 1e6,
            "last_third_peak_mb": max(samples[-third:], default=0) / 1e6, "queued_messages_at_stop": queued_messages}


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


@contextmanager
def _any_path_server(body: bytes) -> Iterator[str]:
    """Loopback HTTP serving the same PNG for every path: a million distinct URLs, one image."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/d"
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--drain-s", type=float, default=0.0, help="also run the drain phase for this long")
    parser.add_argument("--backlog", type=int, default=None, help="LLAVAGUARD_AUDIT_BACKLOG for the drain phase")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        enqueue_dir, drain_dir = tmp / "enqueue", tmp / "drain"
        enqueue_dir.mkdir()
        drain_dir.mkdir()
        figures = enqueue_figures(args.images, enqueue_dir, batch_size=args.batch_size)
        print(f"enqueue {figures['images']:,} images in {figures['messages']:,.0f} messages: "
              f"{figures['enqueue_per_s']:,.0f} images/s enqueued ({figures['end_to_end_per_s']:,.0f}/s with "
              f"the counting passes, {figures['count_pass_s']:.2f}s each); Redis per queued image: "
              f"{figures['used_memory_per_image_b']:.0f} B used_memory, "
              f"{figures['memory_usage_per_image_b']:.0f} B MEMORY USAGE (bulk list + queued record)")
        if args.drain_s:
            drained = drain_figures(args.images, drain_dir, drain_s=args.drain_s, backlog=args.backlog)
            print(f"drain: {drained['images']:,} images, one worker for {drained['drain_s']:.0f}s judged "
                  f"{drained['judged']:,.0f} ({drained['judged_per_s']:,.0f}/s); Redis used_memory baseline "
                  f"{drained['baseline_mb']:.1f} MB, peak {drained['peak_mb']:.1f} MB (+{drained['peak_growth_mb']:.1f}"
                  f" MB; peak in the first third {drained['first_third_peak_mb']:.1f} MB, last third "
                  f"{drained['last_third_peak_mb']:.1f} MB); {drained['queued_messages_at_stop']} messages queued "
                  "when interrupted")


if __name__ == "__main__":
    main(sys.argv[1:])
