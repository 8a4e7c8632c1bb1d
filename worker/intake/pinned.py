"""One guarded HTTP request to a user-supplied URL, connected to the address that was checked.

The host is resolved and judged by the `AddressGuard`, then the request goes to the checked IP literal with
the original `Host` header and (for https) the original name as TLS SNI, so the certificate is verified for
the real host while DNS is never consulted a second time (no rebinding window). Redirects are never followed
here; callers that follow them send each hop through `open` again.

The image fetcher and the webhook sender share this; httpx errors are translated into `ModerationFailed`
here and never escape the intake package. It must never connect to a host it has not just checked.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.addresses import AddressGuard, IPAddress, canonical
from worker.intake.deadline import Deadline
from worker.intake.pace import PaceMonitor
from worker.intake.watchdog import SocketWatchdog

USER_AGENT = "llavaguard-worker"
DEFAULT_PORTS = {"http": 80, "https": 443}
WEBHOOK_BODY_BYTES = 16 * 1024


@dataclass(frozen=True)
class HttpResponse:
    """A response small enough to keep whole: the status, lower-cased headers and the body's first bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


class PinnedHttp:
    """Sends requests to checked addresses only; one instance (one connection pool) is shared by threads."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        allow_http: bool,
        connect_timeout_s: float,
        read_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.guard = guard
        self.schemes: tuple[str, ...] = ("https", "http") if allow_http else ("https",)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._client = _new_client(ssl_context)

    def close(self) -> None:
        self._client.close()

    def parse_url(self, url: str | httpx.URL) -> httpx.URL:
        """The URL, if its scheme is allowed and it names a host (else REQUEST_INVALID / FETCH_SCHEME_*)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ModerationFailed(ErrorCode.REQUEST_INVALID, f"not a valid URL: {exc}") from exc
        if parsed.scheme not in self.schemes:
            allowed = ", ".join(f"{scheme}://" for scheme in self.schemes)
            raise ModerationFailed(
                ErrorCode.FETCH_SCHEME_UNSUPPORTED,
                f"{parsed.scheme or 'scheme-less'} URLs are not fetched (allowed: {allowed})",
            )
        if not parsed.raw_host:
            raise ModerationFailed(ErrorCode.REQUEST_INVALID, "the URL names no host")
        return parsed

    @contextmanager
    def open(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        deadline: Deadline,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        pace: PaceMonitor | None = None,
    ) -> Iterator[httpx.Response]:
        """Stream one response (headers read, body not yet); httpx errors inside the block are translated.

        The deadline holds in every phase: DNS and connect are capped by it, and from the moment a socket
        exists the watchdog shuts it down at the deadline, whatever httpcore is blocked on. With `pace`, the
        same watchdog is tripped earlier when the server falls below the pace (pass it to `iter_body` too).
        """
        target = self.parse_url(url)
        host = target.raw_host.decode("ascii")
        port = target.port or DEFAULT_PORTS[target.scheme]
        addresses = self.guard.resolve(host, port, timeout_s=deadline.cap(self.connect_timeout_s, "DNS"))
        with SocketWatchdog(deadline) as watchdog, _translated(host, port, deadline, watchdog):
            outgoing = _Outgoing(method, target, deadline, dict(headers or {}), body, watchdog.trace)
            if pace is not None:
                pace.attach(watchdog)
            response = self._send_to_first_reachable(outgoing, addresses)
            if pace is not None:
                pace.body_started()
            try:
                yield response
            finally:
                response.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        max_body_bytes: int = WEBHOOK_BODY_BYTES,
    ) -> HttpResponse:
        """One complete request (e.g. a webhook POST): no redirects, the body cut at `max_body_bytes`."""
        deadline = Deadline.after(timeout_s)
        with self.open(method, url, deadline=deadline, headers=headers, body=body) as response:
            kept = bytearray()
            for chunk in iter_body(response, deadline):
                kept += chunk
                if len(kept) >= max_body_bytes:
                    break
            headers_seen = dict(response.headers.items())
            return HttpResponse(response.status_code, headers_seen, bytes(kept[:max_body_bytes]))

    def _send_to_first_reachable(self, outgoing: _Outgoing, addresses: list[IPAddress]) -> httpx.Response:
        """Try the checked addresses in resolver order (an unreachable IPv6 falls back to IPv4)."""
        for address in addresses[:-1]:
            try:
                return self._client.send(self._build_request(outgoing, address), stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                continue
        return self._client.send(self._build_request(outgoing, addresses[-1]), stream=True)

    def _build_request(self, outgoing: _Outgoing, address: IPAddress) -> httpx.Request:
        """The request to the IP literal, carrying the real name in `Host` and (https) in SNI."""
        target = outgoing.target
        host = target.raw_host.decode("ascii")
        headers = {name: value for name, value in outgoing.headers.items() if name.lower() != "host"}
        headers["Host"] = target.netloc.decode("ascii")
        extensions: dict[str, object] = {"trace": outgoing.trace}
        if target.scheme == "https" and not _is_ip_literal(host):
            extensions["sni_hostname"] = host.rstrip(".")
        return self._client.build_request(
            outgoing.method,
            target.copy_with(host=str(canonical(address))),
            headers=headers,
            content=outgoing.body,
            timeout=self._timeout(outgoing.deadline),
            extensions=extensions,
        )

    def _timeout(self, deadline: Deadline) -> httpx.Timeout:
        connect = deadline.cap(self.connect_timeout_s, "connecting")
        read = deadline.cap(self.read_timeout_s, "connecting")
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


@dataclass(frozen=True)
class _Outgoing:
    """One request as the caller asked for it, before it is pinned to an address."""

    method: str
    target: httpx.URL
    deadline: Deadline
    headers: dict[str, str]
    body: bytes | None
    trace: Callable[[str, Mapping[str, Any]], None]


def iter_body(response: httpx.Response, deadline: Deadline, pace: PaceMonitor | None = None) -> Iterator[bytes]:
    """The raw body within the deadline (not content-decoded: a small gzip must not inflate past a limit).

    Checked once more at the end: a watchdog shutdown ends a close-delimited body early, and that must read
    as a timeout, not as a complete short body.
    """
    for chunk in response.iter_raw():
        deadline.check("reading the response body")
        if pace is not None:
            pace.received(len(chunk))
        yield chunk
    deadline.check("reading the response body")
    if pace is not None:
        pace.check()


def _new_client(ssl_context: ssl.SSLContext | None) -> httpx.Client:
    """A client with nothing implicit: no proxies from the environment, redirects, cookies or keep-alive.

    No keep-alive because connections are keyed by IP: a pooled TLS connection verified for one host name
    must never carry a request for another name served from the same address.
    """
    return httpx.Client(
        verify=ssl_context if ssl_context is not None else True,
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@contextmanager
def _translated(host: str, port: int, deadline: Deadline, watchdog: SocketWatchdog) -> Iterator[None]:
    """httpx's errors become ModerationFailed with the code a caller branches on."""
    where = f"{host}:{port}"
    try:
        yield
    except (httpx.HTTPError, httpx.StreamError) as exc:
        if watchdog.fired:  # the error is the watchdog's shutdown: at the deadline, or tripped by the pace rule
            if watchdog.reason is not None:
                raise watchdog.reason from exc
            deadline.check(f"talking to {where}")
        raise _translate(where, exc) from exc
    except httpx.InvalidURL as exc:
        raise ModerationFailed(ErrorCode.REQUEST_INVALID, f"invalid URL for {where}: {exc}") from exc


def _translate(where: str, exc: httpx.HTTPError | httpx.StreamError) -> ModerationFailed:
    if isinstance(exc, httpx.TimeoutException):
        return ModerationFailed(ErrorCode.FETCH_TIMEOUT, f"{where} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ModerationFailed(ErrorCode.FETCH_SCHEME_UNSUPPORTED, f"{where}: {exc}")
    detail = str(exc) or type(exc).__name__
    return ModerationFailed(ErrorCode.FETCH_CONNECTION_FAILED, f"connection to {where} failed: {detail}")
