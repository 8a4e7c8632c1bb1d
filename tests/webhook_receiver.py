"""A loopback webhook receiver for the tests: records every request and answers as a test tells it to.

Answers are chosen per request by a `Responder`: `always(200)`, `fail_first(2, 503)` (per webhook-id),
`slow(1.0)`, `hang` (until `release()`/`close()`). Connections are counted when accepted, so a canary
proves that nothing even connected.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    """What was answered; None while the request hangs."""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


Responder = Callable[["WebhookReceiver", Received], int | None]
"""Returns the status to answer, or None to hang until the receiver is released."""


def always(status: int) -> Responder:
    return lambda _receiver, _request: status


def fail_first(times: int, status: int = 503) -> Responder:
    """`status` to the first `times` requests of each webhook-id, then 200."""
    def respond(receiver: WebhookReceiver, request: Received) -> int:
        seen = sum(1 for r in receiver.snapshot() if r.webhook_id == request.webhook_id)
        return status if seen <= times else 200
    return respond


def slow(delay_s: float, status: int = 200) -> Responder:
    def respond(_receiver: WebhookReceiver, _request: Received) -> int:
        time.sleep(delay_s)
        return status
    return respond


def hang(_receiver: WebhookReceiver, _request: Received) -> int | None:
    return None


@dataclass
class _State:
    received: list[Received] = field(default_factory=list)
    connections: int = 0


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", respond: Responder | None = None) -> None:
        self.respond: Responder = respond or always(200)
        self.answer_headers: dict[str, str] = {}
        """Sent with every answer (e.g. Location, Retry-After)."""
        self._state = _State()
        self._lock = threading.Lock()
        self._released = threading.Event()
        outer = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Received(self.path, headers, body)
                with outer._lock:
                    outer._state.received.append(request)
                status = outer.respond(outer, request)
                if status is None:
                    outer._released.wait()
                    status = 200
                request.status = status
                try:
                    self.send_response(status)
                    for name, value in outer.answer_headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (timeout) or died

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class _Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                with outer._lock:
                    outer._state.connections += 1
                return True

        self.server = _Server((host, 0), _Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hooks") -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def connections(self) -> int:
        with self._lock:
            return self._state.connections

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self._state.received)

    def requests_for(self, webhook_id: str) -> list[Received]:
        return [r for r in self.snapshot() if r.webhook_id == webhook_id]

    def accepted(self) -> Counter[str]:
        """How many times each webhook-id was answered 2xx."""
        return Counter(r.webhook_id for r in self.snapshot() if r.status is not None and 200 <= r.status < 300)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)
