"""Slow (slowloris) image servers get a bounded share of a worker, and healthy images are not delayed by them.

The hostile server listens on 127.0.0.3 and the healthy one on 127.0.0.1 (both allowlisted loopback, two
host names); the hostile one sends its headers and then one body byte a second, which stays inside every
read timeout. Before the pace rule and the per-host limit, 32 such URLs held all 16 threads of a worker
for the whole 30 s fetch budget, twice over, and a batch of 1,000 held the bulk pool for half an hour.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from producers import ModerationClient
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.errors import ErrorCode, FetchHostBusy, ModerationFailed
from worker.intake.addresses import AddressGuard
from worker.intake.hosts import SLOW_STRIKES, HostGate
from worker.intake.http_fetch import HttpFetcher
from worker.intake.pace import Pace
from worker.models import ImageRef, ModerationRequest, Verdict
from worker.queues import BULK_QUEUE
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

HOSTILE_HOST = "127.0.0.3"
NETWORKS = f"127.0.0.1/32,{HOSTILE_HOST}/32"
PNG = make_image("O4", size=(32, 32), fmt="PNG")


class Slowloris:
    """Answers every GET with headers, then one body byte a second until the client goes or `close`."""

    def __init__(self, host: str = HOSTILE_HOST) -> None:
        self.released = threading.Event()
        self.server = LoopbackHTTPServer(host)
        self.server.routes["/slow"] = self._drip
        self.server.routes["/image.png"] = self._image

    def url(self, n: int) -> str:
        return self.server.url(f"/slow?n={n}")

    def _drip(self, req: http.server.BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "image/png")
        req.send_header("Content-Length", "100000")
        req.end_headers()
        with contextlib.suppress(OSError):
            while not self.released.wait(1.0):
                req.wfile.write(b"\x89")
                req.wfile.flush()

    def _image(self, req: http.server.BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Length", str(len(PNG)))
        req.end_headers()
        req.wfile.write(PNG)

    def close(self) -> None:
        self.released.set()
        self.server.close()


@pytest.fixture()
def slowloris() -> Iterator[Slowloris]:
    server = Slowloris()
    yield server
    server.close()


def fetcher(gate: HostGate | None = None, *, total_s: float = 30.0) -> HttpFetcher:
    return HttpFetcher(
        AddressGuard([ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network(f"{HOSTILE_HOST}/32")]),
        allow_http=True, max_bytes=1 << 20, connect_timeout_s=2, read_timeout_s=10, total_timeout_s=total_s,
        max_redirects=1, hosts=gate, pace=Pace(min_bytes_per_s=4096, window_s=2.0),
    )


def test_a_dripping_body_is_cut_off_after_one_pace_window(slowloris: Slowloris) -> None:
    with contextlib.closing(fetcher()) as http:
        started = time.monotonic()
        with pytest.raises(ModerationFailed) as caught:
            http.fetch(slowloris.url(0))
        took = time.monotonic() - started
        assert http.fetch(slowloris.server.url("/image.png")) == PNG  # a healthy answer passes the pace
    assert caught.value.code == ErrorCode.FETCH_TIMEOUT and "too slow" in caught.value.message
    assert took < 15, f"held for {took:.1f}s of a 30 s budget"


def test_headers_that_never_end_are_cut_off_too() -> None:
    sock = __import__("socket").create_server((HOSTILE_HOST, 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = sock.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Padding: ")
            while not stop.wait(0.5):
                conn.sendall(b"a")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with contextlib.closing(fetcher()) as http:
            started = time.monotonic()
            with pytest.raises(ModerationFailed) as caught:
                http.fetch(f"http://{HOSTILE_HOST}:{sock.getsockname()[1]}/x.png")
            took = time.monotonic() - started
    finally:
        stop.set()
        sock.close()
    assert caught.value.code == ErrorCode.FETCH_TIMEOUT and "headers" in caught.value.message
    assert took < 15


def test_one_host_gets_a_few_slots_and_a_slow_host_fails_fast(slowloris: Slowloris) -> None:
    healthy = LoopbackHTTPServer("127.0.0.1")
    healthy.serve_bytes("/ok.png", PNG)
    gate = HostGate(max_per_host=2, wait_s=0.2, cooloff_s=60)
    try:
        with contextlib.closing(fetcher(gate)) as http, ThreadPoolExecutor(8) as pool:
            slow = [pool.submit(http.fetch, slowloris.url(n)) for n in range(5)]
            time.sleep(1.0)
            assert gate.active(HOSTILE_HOST) == 2
            started = time.monotonic()
            assert http.fetch(healthy.url("/ok.png")) == PNG  # another host is not held up
            assert time.monotonic() - started < 2
            outcomes = [_outcome(f.result) for f in slow]
            assert sorted(outcomes).count("fetch_host_busy") == 3 and outcomes.count("fetch_timeout") == 2
            for _ in range(SLOW_STRIKES - 2):  # one more timed-out fetch: the host is now slow
                assert _outcome(lambda: http.fetch(slowloris.url(9))) == "fetch_timeout"
            started = time.monotonic()
            with pytest.raises(ModerationFailed) as caught:
                http.fetch(slowloris.url(10))
            assert time.monotonic() - started < 1, "a slow host's images fail at once"
            assert caught.value.code == ErrorCode.FETCH_TIMEOUT and "in a row" in caught.value.message
            assert http.fetch(healthy.url("/ok.png")) == PNG
    finally:
        healthy.close()


def _outcome(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except FetchHostBusy:
        return "fetch_host_busy"
    except ModerationFailed as exc:
        return str(exc.code)
    return "ok"


def _settings(redis_url: str, sglang_url: str, tmp_path: Path) -> dict[str, str]:
    return {"redis_url": redis_url, "sglang_url": sglang_url, "store_url": f"sqlite:///{tmp_path}/v.db",
            "allowed_networks": NETWORKS, "allow_http": "true"}


def _wait_all(client: ModerationClient, ids: list[str], timeout_s: float) -> dict[str, Verdict]:
    deadline = time.monotonic() + timeout_s
    found: dict[str, Verdict] = {}
    while len(found) < len(ids) and time.monotonic() < deadline:
        found.update(client.get_many([i for i in ids if i not in found]))
        time.sleep(0.5)
    return found


def test_slowloris_urls_do_not_delay_healthy_images(
    fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer, slowloris: Slowloris,
    tmp_path: Path,
) -> None:
    """Default settings (16 threads): 32 slowloris URLs first, then 8 healthy images."""
    settings = _settings(fresh_redis, standin.url, tmp_path)
    healthy_url = image_server.serve_bytes("/ok.png", PNG, "image/png")
    with running_workers(worker_env(**settings), tmp_path / "logs", count=1, concurrency=None):
        client = ModerationClient(settings=load_settings(**settings))
        started = time.monotonic()
        hostile = [client.submit(slowloris.url(n)) for n in range(32)]
        healthy = [client.submit(healthy_url) for _ in range(8)]
        judged = _wait_all(client, healthy, timeout_s=60)
        healthy_s = time.monotonic() - started
        failed = _wait_all(client, hostile, timeout_s=90)
        hostile_s = time.monotonic() - started
        client.close()
    print(f"healthy {healthy_s:.1f}s, slowloris {hostile_s:.1f}s")
    assert len(judged) == 8 and all(v.status == "completed" for v in judged.values())
    assert healthy_s < 15, f"healthy images waited {healthy_s:.1f}s behind slow servers (38 s before)"
    assert len(failed) == 32, "every slowloris moderation ends in a verdict"
    codes = {v.error.code for v in failed.values() if v.error is not None}
    assert codes <= {"fetch_timeout", "fetch_host_busy"} and "fetch_timeout" in codes, codes
    assert hostile_s < 40, f"slowloris moderations took {hostile_s:.1f}s (60 s of held threads before)"


def test_a_batch_of_a_thousand_slowloris_urls_ends_quickly_and_spares_realtime(
    fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer, slowloris: Slowloris,
    tmp_path: Path,
) -> None:
    settings = _settings(fresh_redis, standin.url, tmp_path)
    healthy_url = image_server.serve_bytes("/ok.png", PNG, "image/png")
    requests = [ModerationRequest(id=uuid.uuid4().hex, image=ImageRef(url=slowloris.url(n))) for n in range(1000)]
    with running_workers(worker_env(**settings), tmp_path / "logs", count=1, concurrency=None):
        bulk = ModerationClient(settings=load_settings(**settings), queue=BULK_QUEUE)
        realtime = ModerationClient(settings=load_settings(**settings))
        started = time.monotonic()
        assert len(bulk.enqueue_batch(requests)) == 1000
        time.sleep(2)
        submitted = time.monotonic()
        healthy = realtime.wait(realtime.submit(healthy_url), timeout=60)
        healthy_s = time.monotonic() - submitted
        done = _wait_all(bulk, [r.id for r in requests], timeout_s=240)
        batch_s = time.monotonic() - started
        bulk.close()
        realtime.close()
    print(f"realtime {healthy_s:.1f}s, batch {batch_s:.1f}s")
    assert healthy.status == "completed" and healthy_s < 10, f"a realtime image waited {healthy_s:.1f}s"
    assert len(done) == 1000, f"{1000 - len(done)} items without a verdict after {batch_s:.0f}s"
    codes = {v.error.code for v in done.values() if v.error is not None}
    assert codes <= {"fetch_timeout", "fetch_host_busy"}, codes
    assert batch_s < 180, f"the batch took {batch_s:.0f}s (about 30 minutes before)"
