"""HttpFetcher against real HTTP servers on loopback, with a canary that must never be reached.

The image server listens on 127.0.0.1 (allowlisted); the canary listens on 127.0.0.2 (loopback, but not
allowlisted), standing in for an internal service. Every attacker spelling of the canary's address must be
refused before a connection is made, so the canary must count zero connections. No private, link-local or
metadata address is ever used as a target.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from tests.services import free_port
from worker.errors import ErrorCode, ModerationFailed
from worker.intake.addresses import AddressGuard
from worker.intake.http_fetch import HttpFetcher

LOCAL_ONLY = [ipaddress.ip_network("127.0.0.1/32")]
MAX_BYTES = 64 * 1024
CONNECT_S, READ_S, TOTAL_S = 2.0, 1.0, 3.0


def png_bytes() -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


class Handler(BaseHTTPRequestHandler):
    """Routes by path; `server.release` ends deliberate stalls when the test finishes."""

    server: ImageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        path, _, query = self.path.partition("?")
        route = ROUTES.get(path) or ROUTES[path.rsplit("/", 1)[0] + "/*"]
        with contextlib.suppress(OSError):
            route(self, parse_qs(query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        status = 302 if self.path == "/redirect" else 200
        self.reply(status, body * 100, headers={"Location": "/elsewhere", "X-Echo": "yes"})

    def reply(
        self, status: int, body: bytes, *, length: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length != -1:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.reply(302, b"", headers={"Location": location})


def _hops(handler: Handler, _query: dict[str, list[str]]) -> None:
    left = int(handler.path.rsplit("/", 1)[1])
    if left == 0:
        handler.reply(200, PNG)
    else:
        handler.redirect(f"/hops/{left - 1}")


def _stall(handler: Handler, _query: dict[str, list[str]]) -> None:
    handler.reply(200, PNG[:10], length=len(PNG))
    handler.wfile.flush()
    handler.server.release.wait(30)


def _drip(handler: Handler, _query: dict[str, list[str]]) -> None:
    handler.reply(200, b"", length=MAX_BYTES)
    for _ in range(MAX_BYTES):
        if handler.server.release.wait(0.2):
            return
        handler.wfile.write(b"x")
        handler.wfile.flush()


def _slow_headers(handler: Handler, _query: dict[str, list[str]]) -> None:
    """A header line that grows by one byte per 0.2 s: every read succeeds, the headers never end."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Padding: ")
    while not handler.server.release.wait(0.2):
        handler.wfile.write(b"a")
        handler.wfile.flush()


def _endless_continue(handler: Handler, _query: dict[str, list[str]]) -> None:
    """Informational responses forever: httpcore keeps waiting for the final one."""
    while not handler.server.release.wait(0.2):
        handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        handler.wfile.flush()


def _drip_undeclared(handler: Handler, _query: dict[str, list[str]]) -> None:
    """A close-delimited body dripping slowly: cutting it off must not look like a complete (short) body."""
    handler.reply(200, PNG[:10], length=-1)
    while not handler.server.release.wait(0.2):
        handler.wfile.write(b"x")
        handler.wfile.flush()


ROUTES: dict[str, Callable[[Handler, dict[str, list[str]]], None]] = {
    "/image.png": lambda h, q: h.reply(200, PNG, headers={"Content-Type": "image/png"}),
    "/undeclared.png": lambda h, q: h.reply(200, PNG, length=-1),
    "/host": lambda h, q: h.reply(200, h.headers.get("Host", "").encode()),
    "/missing": lambda h, q: h.reply(404, b"no"),
    "/gone": lambda h, q: h.reply(410, b"gone"),
    "/error": lambda h, q: h.reply(500, b"oops"),
    "/not-modified": lambda h, q: h.reply(304, b"", length=-1),
    "/big": lambda h, q: h.reply(200, b"x" * 16, length=MAX_BYTES + 1),
    "/big-undeclared": lambda h, q: h.reply(200, b"x" * (MAX_BYTES * 2), length=-1),
    "/exact": lambda h, q: h.reply(200, b"x" * MAX_BYTES),
    "/gzip": lambda h, q: h.reply(200, PNG, headers={"Content-Encoding": "gzip"}),
    "/redirect": lambda h, q: h.redirect(q["to"][0]),
    "/no-location": lambda h, q: h.reply(302, b""),
    "/loop": lambda h, q: h.redirect("/loop"),
    "/hops/*": _hops,
    "/stall": _stall,
    "/drip": _drip,
    "/drip-undeclared": _drip_undeclared,
    "/slow-headers": _slow_headers,
    "/continue-forever": _endless_continue,
}


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int = 0) -> None:
        super().__init__((host, port), Handler)
        self.requests: list[tuple[str, str]] = []
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class Canary:
    """A bare TCP listener that only counts the connections it accepts (and any still queued at the end)."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()

    def close(self) -> int:
        """Stop, drain anything the kernel already accepted, and return the total count."""
        self._stop.set()
        self._thread.join(5)
        self.sock.settimeout(0)
        with contextlib.suppress(BlockingIOError):
            while True:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
        self.sock.close()
        return self.connections


@contextlib.contextmanager
def running(server: ImageServer) -> Iterator[ImageServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with running(ImageServer("127.0.0.1")) as srv:
        yield srv


@pytest.fixture()
def canary() -> Iterator[Canary]:
    listener = Canary("127.0.0.2")
    try:
        yield listener
    finally:
        assert listener.close() == 0, "the canary on 127.0.0.2 was contacted"


def make_fetcher(*, allow_http: bool = True, max_redirects: int = 3) -> HttpFetcher:
    return HttpFetcher(
        AddressGuard(LOCAL_ONLY),
        allow_http=allow_http,
        max_bytes=MAX_BYTES,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
        total_timeout_s=TOTAL_S,
        max_redirects=max_redirects,
    )


@pytest.fixture()
def fetcher() -> Iterator[HttpFetcher]:
    with contextlib.closing(make_fetcher()) as built:
        yield built


def failure(fetcher: HttpFetcher, url: str) -> ModerationFailed:
    with pytest.raises(ModerationFailed) as caught:
        fetcher.fetch(url)
    return caught.value


def test_fetches_from_the_allowed_address(fetcher: HttpFetcher, server: ImageServer) -> None:
    assert fetcher.fetch(server.url("/image.png")) == PNG
    assert fetcher.fetch(server.url("/undeclared.png")) == PNG
    assert fetcher.fetch(server.url("/exact")) == b"x" * MAX_BYTES


def test_sends_the_original_host_header(fetcher: HttpFetcher, server: ImageServer) -> None:
    assert fetcher.fetch(server.url("/host", host="0x7f000001")) == f"0x7f000001:{server.port}".encode()
    assert fetcher.fetch(server.url("/host")) == f"127.0.0.1:{server.port}".encode()


@pytest.mark.parametrize(
    ("spelling", "code"),
    [
        ("127.0.0.2", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("0x7f000002", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("2130706434", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("127.2", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("0x7f.0.0.2", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("0177.0.0.2", ErrorCode.REQUEST_INVALID),
        ("[::ffff:127.0.0.2]", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("[::ffff:7f00:2]", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("127.0.0.1@127.0.0.2", ErrorCode.FETCH_ADDRESS_REFUSED),
        ("127.0.0.1:1@127.0.0.2", ErrorCode.FETCH_ADDRESS_REFUSED),
    ],
)
def test_attacker_spellings_of_the_canary_are_refused(
    fetcher: HttpFetcher, canary: Canary, spelling: str, code: ErrorCode
) -> None:
    assert failure(fetcher, f"http://{spelling}:{canary.port}/image.png").code == code


def test_loopback_ipv6_is_refused(fetcher: HttpFetcher) -> None:
    assert failure(fetcher, f"http://[::1]:{free_port()}/").code == ErrorCode.FETCH_ADDRESS_REFUSED


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/", "http://0x7f000002:{port}/x", "//127.0.0.2:{port}/"])
def test_a_redirect_to_the_canary_is_refused(
    fetcher: HttpFetcher, server: ImageServer, canary: Canary, target: str
) -> None:
    url = server.url("/redirect?to=" + target.format(port=canary.port))
    assert failure(fetcher, url).code == ErrorCode.FETCH_ADDRESS_REFUSED
    assert [path for path, _host in server.requests] == [urlsplit(url).path + "?" + urlsplit(url).query]


def test_dns_rebinding_cannot_redirect_the_connection(
    monkeypatch: pytest.MonkeyPatch, fetcher: HttpFetcher, server: ImageServer
) -> None:
    """The name answers 127.0.0.1 when checked and 127.0.0.2 afterwards; the connection must use the first."""
    canary = Canary("127.0.0.2", server.port)
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["127.0.0.2"] * 10)

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "not numeric")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        assert fetcher.fetch(server.url("/host", host="rebind.test")) == f"rebind.test:{server.port}".encode()
    finally:
        assert canary.close() == 0


def test_follows_redirects_up_to_the_limit(fetcher: HttpFetcher, server: ImageServer) -> None:
    assert fetcher.fetch(server.url("/hops/3")) == PNG
    assert failure(fetcher, server.url("/hops/4")).code == ErrorCode.FETCH_TOO_MANY_REDIRECTS
    assert failure(fetcher, server.url("/loop")).code == ErrorCode.FETCH_TOO_MANY_REDIRECTS


def test_zero_redirects_allowed(server: ImageServer) -> None:
    with contextlib.closing(make_fetcher(max_redirects=0)) as strict:
        assert strict.fetch(server.url("/hops/0")) == PNG
        assert failure(strict, server.url("/hops/1")).code == ErrorCode.FETCH_TOO_MANY_REDIRECTS


@pytest.mark.parametrize(
    ("path", "code", "mentions"),
    [
        ("/missing", ErrorCode.FETCH_NOT_FOUND, "404"),
        ("/gone", ErrorCode.FETCH_NOT_FOUND, "410"),
        ("/error", ErrorCode.FETCH_HTTP_STATUS, "500"),
        ("/not-modified", ErrorCode.FETCH_HTTP_STATUS, "304"),
        ("/no-location", ErrorCode.FETCH_HTTP_STATUS, "302"),
        ("/gzip", ErrorCode.FETCH_HTTP_STATUS, "gzip"),
        ("/big", ErrorCode.IMAGE_TOO_LARGE, str(MAX_BYTES)),
        ("/big-undeclared", ErrorCode.IMAGE_TOO_LARGE, str(MAX_BYTES)),
    ],
)
def test_bad_responses_get_their_code(
    fetcher: HttpFetcher, server: ImageServer, path: str, code: ErrorCode, mentions: str
) -> None:
    error = failure(fetcher, server.url(path))
    assert error.code == code
    assert mentions in error.message


def test_a_stalled_body_times_out(fetcher: HttpFetcher, server: ImageServer) -> None:
    started = time.monotonic()
    assert failure(fetcher, server.url("/stall")).code == ErrorCode.FETCH_TIMEOUT
    assert READ_S * 0.8 < time.monotonic() - started < READ_S + 1.5


@pytest.mark.parametrize("path", ["/drip", "/drip-undeclared", "/slow-headers", "/continue-forever"])
def test_slow_servers_hit_the_total_deadline(fetcher: HttpFetcher, server: ImageServer, path: str) -> None:
    """Each byte arrives well within the read timeout; only the total deadline can stop these servers,
    whether they drip the body, the headers, or an endless series of `100 Continue` responses."""
    started = time.monotonic()
    error = failure(fetcher, server.url(path))
    elapsed = time.monotonic() - started
    assert error.code == ErrorCode.FETCH_TIMEOUT
    assert "total" in error.message
    assert TOTAL_S * 0.9 < elapsed < TOTAL_S + 1.0


def test_connection_refused(fetcher: HttpFetcher) -> None:
    assert failure(fetcher, f"http://127.0.0.1:{free_port()}/").code == ErrorCode.FETCH_CONNECTION_FAILED


def test_https_to_a_plain_http_server_fails_to_connect(fetcher: HttpFetcher, server: ImageServer) -> None:
    url = f"https://127.0.0.1:{server.port}/image.png"
    assert failure(fetcher, url).code == ErrorCode.FETCH_CONNECTION_FAILED


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://127.0.0.1/image.png", ErrorCode.FETCH_SCHEME_UNSUPPORTED),
        ("file:///etc/passwd", ErrorCode.FETCH_SCHEME_UNSUPPORTED),
        ("gopher://127.0.0.1:70/", ErrorCode.FETCH_SCHEME_UNSUPPORTED),
        ("/relative/only.png", ErrorCode.FETCH_SCHEME_UNSUPPORTED),
        ("http:///no-host", ErrorCode.REQUEST_INVALID),
        ("http://[not-an-address]/", ErrorCode.REQUEST_INVALID),
        ("http://exa mple.com/", ErrorCode.FETCH_DNS_FAILED),
        ("http://no-such-host.invalid/", ErrorCode.FETCH_DNS_FAILED),
    ],
)
def test_unusable_urls(fetcher: HttpFetcher, url: str, code: ErrorCode) -> None:
    assert failure(fetcher, url).code == code


def test_plain_http_needs_allow_http(server: ImageServer) -> None:
    with contextlib.closing(make_fetcher(allow_http=False)) as https_only:
        assert failure(https_only, server.url("/image.png")).code == ErrorCode.FETCH_SCHEME_UNSUPPORTED
        redirect = server.url("/redirect?to=" + server.url("/image.png"))
        assert failure(https_only, redirect.replace("http://", "https://")).code == (
            ErrorCode.FETCH_CONNECTION_FAILED
        )
    assert server.requests == []


def test_one_fetcher_serves_many_threads(fetcher: HttpFetcher, server: ImageServer) -> None:
    urls = [server.url("/image.png"), server.url("/hops/2"), server.url("/undeclared.png")] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(fetcher.fetch, urls)) == [PNG] * len(urls)


def test_pinned_request_for_webhooks(fetcher: HttpFetcher, server: ImageServer, canary: Canary) -> None:
    """The helper a webhook sender reuses: one POST, no redirect followed, the reply body cut short."""
    response = fetcher.http.request(
        "POST", server.url("/hook"), timeout_s=5, headers={"Content-Type": "application/json"}, body=b'{"a":1}',
        max_body_bytes=50,
    )
    assert response.status == 200
    assert response.headers["x-echo"] == "yes"
    assert response.body == (b'{"a":1}' * 100)[:50]
    redirected = fetcher.http.request("POST", server.url("/redirect"), timeout_s=5, body=b"{}")
    assert redirected.status == 302
    assert [path for path, _ in server.requests] == ["/hook", "/redirect"]
    with pytest.raises(ModerationFailed) as caught:
        fetcher.http.request("POST", f"http://127.0.0.2:{canary.port}/hook", timeout_s=5, body=b"{}")
    assert caught.value.code == ErrorCode.FETCH_ADDRESS_REFUSED
