"""Hold a request to its total deadline in every phase, including the ones httpx cannot bound by itself.

httpx's timeouts bound each read, not their sum: a server sending one header byte per read timeout, or an
endless run of `100 Continue` responses, keeps a worker inside a single `send` for hours. httpcore reports
each new connection through the public `trace` request extension; the watchdog keeps that connection's socket
and, at the deadline (or when `trip` is called, e.g. by the pace rule), shuts it down, which wakes whatever
read is blocked on it. It never closes the socket
(httpcore owns it) and never touches a socket it was not handed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import types
from collections.abc import Mapping
from typing import Any

from worker.errors import ModerationFailed
from worker.intake.deadline import Deadline

CONNECTED_EVENT = "connection.connect_tcp.complete"


class SocketWatchdog:
    """One request's watchdog: use as a context manager and pass `trace` as the request's trace extension."""

    def __init__(self, deadline: Deadline) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._reason: ModerationFailed | None = None
        self._timer = threading.Timer(deadline.remaining_s(), self._fire)
        self._timer.daemon = True

    @property
    def fired(self) -> bool:
        """True once the deadline passed and the sockets were shut down: a read error now means "timed out"."""
        with self._lock:
            return self._fired

    @property
    def reason(self) -> ModerationFailed | None:
        """Why `trip` shut the sockets down before the deadline (None: the deadline itself, or not fired)."""
        with self._lock:
            return self._reason

    def trip(self, reason: ModerationFailed) -> None:
        """Shut the request's sockets down now, for `reason` (the error the request then fails with)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self._fire()

    def __enter__(self) -> SocketWatchdog:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event != CONNECTED_EVENT:
            return
        get_extra_info = getattr(info.get("return_value"), "get_extra_info", None)
        sock = get_extra_info("socket") if callable(get_extra_info) else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            late = self._fired
        if late:
            _shut_down(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by httpcore: nothing left to stop
        sock.shutdown(socket.SHUT_RDWR)
