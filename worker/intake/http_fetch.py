"""Download an image from an http(s) URL: guarded, pinned, size-limited, time-limited, redirects re-checked.

Every hop of a redirect chain goes through `PinnedHttp.open` again, so a public server cannot bounce the
worker to an internal address. The body is streamed and abandoned at `max_bytes`, and the whole fetch shares
one deadline, so no server can make a worker hang or buffer without bound. A slow server is cut off sooner
by the pace rule (`pace`), and one host never holds more than its share of the process's fetches (`hosts`).
"""

from __future__ import annotations

import ssl

import httpx

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.addresses import AddressGuard
from worker.intake.deadline import Deadline
from worker.intake.hosts import HostGate
from worker.intake.limits import too_large
from worker.intake.pace import Pace, PaceMonitor
from worker.intake.pinned import PinnedHttp, iter_body

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
NOT_FOUND_STATUSES = frozenset({404, 410})
ACCEPT_IMAGES = {"Accept": "image/*"}


class HttpFetcher:
    """Fetches image bytes; thread-safe (one connection pool shared by every thread of a worker)."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        allow_http: bool,
        max_bytes: int,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float,
        max_redirects: int,
        ssl_context: ssl.SSLContext | None = None,
        hosts: HostGate | None = None,
        pace: Pace | None = None,
    ) -> None:
        self.http = PinnedHttp(
            guard,
            allow_http=allow_http,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            ssl_context=ssl_context,
        )
        """The guarded, pinned request sender, exposed so a webhook sender can share it."""
        self.max_bytes = max_bytes
        self.total_timeout_s = total_timeout_s
        self.max_redirects = max_redirects
        self.hosts = hosts
        self.pace = pace or Pace(min_bytes_per_s=0, window_s=1.0)

    def close(self) -> None:
        self.http.close()

    def fetch(self, url: str) -> bytes:
        """The body of `url`, following at most `max_redirects` redirects; FETCH_* or IMAGE_TOO_LARGE if not.

        `total_timeout_s` bounds the whole fetch, DNS and every hop included, even against servers that
        drip headers or body one byte at a time (see `watchdog`). The host's slot (FetchHostBusy when none is
        free) is held for the whole fetch, redirects included.
        """
        current = self.http.parse_url(url)
        if self.hosts is None:
            return self._fetch(url, current)
        with self.hosts.admit(current.raw_host.decode("ascii")):
            return self._fetch(url, current)

    def _fetch(self, url: str, current: httpx.URL) -> bytes:
        deadline = Deadline.after(self.total_timeout_s)
        with PaceMonitor(self.pace) as pace:
            for _hop in range(self.max_redirects + 1):
                with self.http.open("GET", current, deadline=deadline, headers=ACCEPT_IMAGES, pace=pace) as response:
                    location = _redirect_location(response)
                    if location is None:
                        _check_status(response)
                        return _read_limited(response, self.max_bytes, deadline, pace)
                current = _follow(current, location)
        raise ModerationFailed(
            ErrorCode.FETCH_TOO_MANY_REDIRECTS, f"more than {self.max_redirects} redirects from {url!r}"
        )


def _redirect_location(response: httpx.Response) -> str | None:
    if response.status_code not in REDIRECT_STATUSES:
        return None
    location = response.headers.get("Location")
    if not location:
        raise ModerationFailed(
            ErrorCode.FETCH_HTTP_STATUS, f"HTTP {response.status_code} redirect without a Location header"
        )
    return str(location)


def _follow(current: httpx.URL, location: str) -> httpx.URL:
    """The next hop, resolved against the URL as the user wrote it (never against the pinned IP URL)."""
    try:
        return current.join(location)
    except httpx.InvalidURL as exc:
        raise ModerationFailed(ErrorCode.FETCH_HTTP_STATUS, f"redirect to an invalid URL: {exc}") from exc


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in NOT_FOUND_STATUSES:
        raise ModerationFailed(ErrorCode.FETCH_NOT_FOUND, f"the image URL answered HTTP {status}")
    if not 200 <= status < 300:
        raise ModerationFailed(ErrorCode.FETCH_HTTP_STATUS, f"the image URL answered HTTP {status}")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        message = f"the server sent Content-Encoding {encoding!r} although asked for identity"
        raise ModerationFailed(ErrorCode.FETCH_HTTP_STATUS, message)


def _read_limited(response: httpx.Response, max_bytes: int, deadline: Deadline, pace: PaceMonitor) -> bytes:
    """The whole body, refused as soon as it is known to exceed `max_bytes` (declared or counted)."""
    declared = _content_length(response)
    if declared is not None and declared > max_bytes:
        raise too_large(max_bytes, f"declares {declared} bytes")
    body = bytearray()
    for chunk in iter_body(response, deadline, pace):
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes, "sent more")
    return bytes(body)


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None

