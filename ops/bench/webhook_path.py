"""Worker CPU of one webhook delivery, stage by stage: outbox write, claim, Celery publish (before issue 15),
attempt (lease, sign, POST to a loopback receiver, record). Run by `python -m ops.bench.image_path`.

A private redis-server and the receiver run as child processes, so only the worker's side is counted.
Before issue 15 every claimed delivery was also a Celery task: its publish is measured here, its receipt on
a worker (kombu read, decode, task call) is not, so the "today" total is a lower bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from celery import Celery

from tests.services import free_port, redis_server, wait_for_port
from worker import composition
from worker.notify.events import Target
from worker.notify.outbox import Outbox
from worker.notify.signing import Signer, new_secret
from worker.queues import DELIVER_WEBHOOK_TASK, WEBHOOKS_QUEUE
from worker.settings import Settings

RECEIVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
BODY = json.dumps({"type": "moderation.completed", "data": {"id": "x" * 36, "rationale": "r" * 600}})


def per_call_ms(work: Callable[[int], object], count: int) -> float:
    started = time.process_time()
    for index in range(count):
        work(index)
    return (time.process_time() - started) / count * 1000


def measure(count: int = 300) -> dict[str, float]:
    """CPU ms per delivery of each stage, one endpoint, deliveries all succeeding."""
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        port = free_port()
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
        try:
            wait_for_port("127.0.0.1", port, proc=receiver)
            return _stages(redis_url, f"http://127.0.0.1:{port}/hook", count)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)


def _stages(redis_url: str, url: str, count: int) -> dict[str, float]:
    settings = Settings(redis_url=redis_url, webhook_url=[url], webhook_secret=[new_secret()])
    outbox = Outbox.from_url(redis_url, retention_s=3600)
    courier = composition.webhook_courier(settings)
    courier.outbox = outbox
    target = Target(url=url, trusted=True)
    celery = Celery(broker=redis_url)
    signer = Signer.from_secrets([new_secret()])
    ids = [f"bench-{n}" for n in range(count)]
    try:
        now = time.time()
        enqueue = per_call_ms(lambda n: outbox.enqueue(ids[n], "moderation.completed", target, ids[n], BODY,
                                                       now=now), count)
        claimed: list[tuple[str, int]] = []
        started = time.process_time()
        while len(claimed) < count:
            claimed += outbox.claim(now=time.time(), lease_until=time.time() + 60, limit=100)
        claim = (time.process_time() - started) / count * 1000
        with celery.producer_or_acquire() as producer:
            publish = per_call_ms(lambda n: celery.send_task(
                DELIVER_WEBHOOK_TASK, args=list(claimed[n]), queue=WEBHOOKS_QUEUE, producer=producer), count)
        sign = per_call_ms(lambda n: signer.headers(ids[n], BODY.encode()), count)
        attempt = per_call_ms(lambda n: courier.attempt(*claimed[n]), count)
        delivered = sum(1 for i in ids if (d := outbox.get(i)) is not None and d.state == "delivered")
    finally:
        courier.sender.close()
        outbox.close()
    if delivered != count:
        raise RuntimeError(f"only {delivered} of {count} deliveries were delivered")
    return {"enqueue": enqueue, "claim": claim, "celery publish": publish, "sign": sign, "attempt": attempt}


def report(count: int = 300) -> None:
    """Log lines are still rendered (a worker writes them too), to /dev/null rather than the table."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: SIM115
    stages = measure(count)
    today = stages["enqueue"] + stages["claim"] + stages["celery publish"] + stages["attempt"]
    new = stages["enqueue"] + stages["claim"] + stages["attempt"]
    print(f"\nwebhook delivery, CPU ms each ({count} deliveries, one endpoint, receiver on loopback)")
    for stage, value in stages.items():
        print(f"{stage:>24} {value:8.2f}")
    print(f"{'total today (lower bound)':>24} {today:8.2f}\n{'total new':>24} {new:8.2f}")
