"""Throughput benchmark (issue 15 item 6): the pipeline with DEFAULT settings vs a direct asyncio client.

    python -m ops.bench.throughput [--quick] [--json] [--widths 8,32,128,512] [--ceiling 40] [--seconds 15]

Everything runs on loopback: a private redis-server, the SGLang stand-in with a fixed capacity
(`max_running` = width, `service_time_s` = width / ceiling, so every width has the same ceiling), real
`llavaguard worker` processes with default settings, SQLite for verdicts, and an image server for the
photo-like JPEGs (noise + texture, generated here). For each width it prints the pipeline's moderations/s,
a direct client's (1,000 requests in flight, no queue, no store: how LlavaGuard's evaluator drives SGLang)
and their ratio; then worker CPU ms/image (utime+stime of every worker process from /proc, divided by
images, fetch included) for 640x480 and 1280x800, realtime and bulk; Redis bytes per queued bulk image and
the enqueue rate of `llavaguard audit` (`--audit-images`); peak worker RSS; and the submit -> stored
verdict overhead p50/p99 at half the ceiling (verdict timestamps minus the service time). A synchronous
path (`?wait=`, SDK `moderate()`) plugs in at `sync_latency_ms`. Not a test: no asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from PIL import Image, ImageFilter

from producers import ModerationClient
from tests.harness import LoopbackHTTPServer, WorkerProcess, running_workers, worker_env
from tests.services import free_port, redis_server, stop_process, wait_for_port
from worker.models import ImageRef, ModerationRequest, Verdict
from worker.queues import BULK_QUEUE
from worker.settings import load_settings

SIZES = ((640, 480), (1280, 800))
Pipeline = tuple[ModerationClient, list[WorkerProcess], "StandIn"]


class StandIn:
    """The stand-in in a process of its own: in this one it would share a GIL with the image server and the
    direct client, and measure them instead of the worker."""

    def __init__(self, width: int, service_s: float) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "worker.standin", "--port", str(port),
                                      "--max-running", str(width), "--service-time-s", str(service_s)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", port, proc=self.proc)

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/standin/stats", timeout=10).json())

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *_: object) -> None:
        stop_process(self.proc)


def photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG that costs what a photo costs to decode and resize: noise, blur texture, gradients."""
    noise = [Image.effect_noise((width, height), 40 + 10 * ((seed + c) % 5)) for c in range(3)]
    texture = Image.merge("RGB", noise).filter(ImageFilter.GaussianBlur(1.5))
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.blend(texture, gradient, 0.35 + 0.05 * (seed % 4))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def worker_cpu_s(workers: list[WorkerProcess]) -> float:
    """utime + stime of the workers and all their descendants (prefork children, if any), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(_tree_ticks(w.proc.pid) for w in workers) / ticks


def _tree_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12]) + sum(_tree_ticks(c) for c in children)


def peak_rss_mb(workers: list[WorkerProcess]) -> float:
    peak = 0
    for w in workers:
        for line in Path(f"/proc/{w.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def wait_all(client: ModerationClient, ids: list[str], timeout_s: float) -> dict[str, Verdict]:
    deadline, found = time.monotonic() + timeout_s, dict[str, Verdict]()
    while len(found) < len(ids) and time.monotonic() < deadline:
        found.update(client.get_many([i for i in ids if i not in found][:2000]))
        time.sleep(0.2)
    return found


class Bench:
    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp, self.args = tmp, args
        self.shared: Pipeline | None = None
        """--quick: one pipeline for every part (a worker start is most of a smoke run's time)."""
        self.images = LoopbackHTTPServer("127.0.0.1")
        self.urls = {size: [self.images.serve_bytes(f"/{size[0]}x{size[1]}-{n}.jpg", photo(*size, n), "image/jpeg")
                            for n in range(8)] for size in SIZES}

    @contextmanager
    def pipeline(self, width: int, service_s: float, name: str) -> Iterator[Pipeline]:
        if self.shared is not None:
            yield self.shared
            return
        run = self.tmp / name
        run.mkdir()
        with redis_server(run) as redis_url, StandIn(width, service_s) as standin:
            settings = {"redis_url": redis_url, "sglang_url": standin.url, "store_url": f"sqlite:///{run}/v.db",
                        "allow_http": "true", "allowed_networks": "127.0.0.1/32", "log_level": "WARNING",
                        **dict(kv.split("=", 1) for kv in self.args.setting)}
            with running_workers(worker_env(**settings), run, count=self.args.workers, concurrency=None) as workers:
                with ModerationClient(settings=load_settings(**settings)) as client:
                    client.wait(client.submit(self.urls[SIZES[0]][0]), timeout=60)  # warm-up
                    yield client, workers, standin

    def throughput(self, width: int) -> dict[str, Any]:
        service_s = width / self.args.ceiling
        count = max(int(self.args.ceiling * self.args.seconds), 2 * width)
        urls = self.urls[SIZES[0]]
        with self.pipeline(width, service_s, f"w{width}") as (client, _, standin):
            started = time.perf_counter()
            ids = [client.submit(urls[n % len(urls)]) for n in range(count)]
            done = wait_all(client, ids, timeout_s=30 + 20 * count / self.args.ceiling)
            pipeline_s = time.perf_counter() - started
            peak = standin.stats()["peak_running"]
        direct = asyncio.run(direct_client(width, service_s, count))
        return {"width": width, "service_time_s": service_s, "images": count, "completed": len(done),
                "pipeline_per_s": len(done) / pipeline_s, "direct_per_s": direct,
                "ratio": len(done) / pipeline_s / direct, "peak_in_flight": peak}

    def cpu(self) -> dict[str, Any]:
        """CPU ms/image per size and path, on a server wide and fast enough never to be the limit."""
        out: dict[str, Any] = {}
        count = self.args.cpu_images
        with self.pipeline(256, 0.05, "cpu") as (client, workers, _):
            bulk = ModerationClient(settings=client.settings, queue=BULK_QUEUE)
            for size in SIZES:
                urls = self.urls[size]
                for path in ("realtime", "bulk"):
                    before = worker_cpu_s(workers)
                    if path == "realtime":
                        ids = [client.submit(urls[n % len(urls)]) for n in range(count)]
                    else:
                        requests = [ModerationRequest(id=uuid.uuid4().hex, image=ImageRef(url=urls[n % len(urls)]))
                                    for n in range(count)]
                        ids = bulk.enqueue_batch(requests)
                    wait_all(client, ids, timeout_s=300)
                    out[f"{path}_{size[0]}x{size[1]}_ms"] = 1000 * (worker_cpu_s(workers) - before) / count
            bulk.close()
            out["peak_worker_rss_mb"] = peak_rss_mb(workers)
        return out

    def latency(self) -> dict[str, Any]:
        """submit -> stored verdict beyond the model's own time, at half the ceiling, realtime path."""
        width, service_s = 32, 32 / self.args.ceiling
        rate, count = self.args.ceiling / 2, int(self.args.ceiling / 2 * min(self.args.seconds, 10))
        with self.pipeline(width, service_s, "latency") as (client, _, standin):
            service_s = float(standin.stats()["service_time_s"])  # --quick: the shared stand-in's
            ids, started = [], time.perf_counter()
            for n in range(count):
                time.sleep(max(0.0, started + n / rate - time.perf_counter()))
                ids.append(client.submit(self.urls[SIZES[0]][n % 8]))
            done = wait_all(client, ids, timeout_s=120)
        overhead = sorted(1000 * ((v.completed_at - v.created_at).total_seconds() - service_s) for v in done.values())
        return {"latency_rate_per_s": rate, "overhead_p50_ms": _pct(overhead, 50),
                "overhead_p99_ms": _pct(overhead, 99),
                "sync_latency_ms": None}  # the hook: t-bulk's `?wait=` / `moderate()` p50, measured here once merged

    def audit(self) -> dict[str, Any]:
        """`llavaguard audit --no-wait` of a manifest of URLs, no worker running: bytes/image and enqueue rate."""
        run = self.tmp / "audit"
        run.mkdir()
        manifest = run / "manifest.txt"
        manifest.write_text("".join(f"{self.urls[SIZES[0]][0]}?n={n}\n" for n in range(self.args.audit_images)))
        with redis_server(run) as redis_url:
            r = redis.Redis.from_url(redis_url)
            before = int(r.info("memory")["used_memory"])
            env = worker_env(redis_url=redis_url, store_url=f"sqlite:///{run}/v.db", allow_http="true",
                             allowed_networks="127.0.0.1/32")
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "producers.cli", "audit", str(manifest), "--no-wait",
                            "--no-progress"], env=env, check=True, capture_output=True)
            took = time.perf_counter() - started
            used = int(r.info("memory")["used_memory"]) - before
        return {"audit_images": self.args.audit_images, "audit_enqueue_per_s": self.args.audit_images / took,
                "redis_bytes_per_queued_image": used / self.args.audit_images}


def _pct(values: list[float], p: int) -> float | None:
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else None


async def direct_client(width: int, service_s: float, count: int, in_flight: int = 1000) -> float:
    """Moderations/s of `count` chat completions, at most `in_flight` at once, against a fresh stand-in."""
    image = base64.b64encode(photo(640, 480, 0)).decode()
    body = {"model": "default", "max_tokens": 200, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image}"}},
        {"type": "text", "text": "Assess the image against the policy."}]}]}
    with StandIn(width, service_s) as standin:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with httpx.AsyncClient(base_url=standin.url, limits=limits, timeout=600) as http:
            gate = asyncio.Semaphore(in_flight)

            async def one() -> None:
                async with gate:
                    (await http.post("/v1/chat/completions", json=body)).raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="8,32,128,512")
    parser.add_argument("--ceiling", type=float, default=40.0, help="server moderations/s at every width")
    parser.add_argument("--seconds", type=float, default=15.0, help="target length of one throughput run")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default settings each)")
    parser.add_argument("--cpu-images", type=int, default=200)
    parser.add_argument("--audit-images", type=int, default=50_000)
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a worker setting to change from its default, e.g. inflight_window=16 (repeatable)")
    parser.add_argument("--parts", default="throughput,cpu,latency,audit", help="which parts to run")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run of every part")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.widths, args.seconds, args.cpu_images, args.audit_images = "8", 1.0, 4, 200
    result: dict[str, Any] = {"ceiling_per_s": args.ceiling, "workers": args.workers, "settings": args.setting,
                              "widths": []}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        bench = Bench(Path(tmp), args)
        stack.callback(bench.images.close)
        if args.quick:
            bench.shared = stack.enter_context(bench.pipeline(8, 8 / args.ceiling, "shared"))
        parts = set(args.parts.split(","))
        for width in (int(w) for w in args.widths.split(",")) if "throughput" in parts else ():
            result["widths"].append(bench.throughput(width))
            _progress(args, result["widths"][-1])
        for part in ("cpu", "latency", "audit"):
            if part in parts:
                result.update(getattr(bench, part)())
    print(json.dumps(result, indent=2) if args.json else table(result))


def _progress(args: argparse.Namespace, row: dict[str, Any]) -> None:
    if not args.json:
        print(f"  width {row['width']}: pipeline {row['pipeline_per_s']:.1f}/s, direct {row['direct_per_s']:.1f}/s",
              file=sys.stderr, flush=True)


def table(r: dict[str, Any]) -> str:
    lines = [f"stand-in ceiling {r['ceiling_per_s']:.0f}/s at every width; {r['workers']} worker process(es), "
             f"settings: {', '.join(r['settings']) or 'defaults'}", ""]
    if r["widths"]:
        lines += ["| server width | service time | pipeline/s | direct (1,000 in flight)/s | pipeline/direct "
                  "| peak in flight |", "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {w['width']} | {w['service_time_s']:.2f} s | {w['pipeline_per_s']:.1f} "
                  f"| {w['direct_per_s']:.1f} | {w['ratio']:.2f} | {w['peak_in_flight']} |" for w in r["widths"]]
    if "peak_worker_rss_mb" in r:
        lines += ["", "| worker CPU per image (fetch included) | realtime | bulk |", "|---|---:|---:|"]
        lines += [f"| {w}x{h} JPEG | {r[f'realtime_{w}x{h}_ms']:.1f} ms | {r[f'bulk_{w}x{h}_ms']:.1f} ms |"
                  for w, h in SIZES]
        lines += ["", f"peak worker RSS: {r['peak_worker_rss_mb']:.0f} MB"]
    if "overhead_p50_ms" in r:
        lines += [f"submit -> verdict overhead at {r['latency_rate_per_s']:.0f}/s: p50 {_ms(r['overhead_p50_ms'])}, "
                  f"p99 {_ms(r['overhead_p99_ms'])} (sync path: {_ms(r['sync_latency_ms'])})"]
    if "audit_images" in r:
        lines += [f"audit of {r['audit_images']} URLs: {r['audit_enqueue_per_s']:.0f} images/s enqueued, "
                  f"{r['redis_bytes_per_queued_image']:.0f} B of Redis per queued image"]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


if __name__ == "__main__":
    main()
