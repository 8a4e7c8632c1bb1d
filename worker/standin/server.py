"""The stand-in's HTTP plumbing: a threaded JSON server that can be stopped with connections still open.

A thread per connection (HTTP/1.1 keep-alive) handles hundreds of concurrent clients, which is all a
stand-in needs. `stop` must really cut clients off: a "server down" test is meaningless if a kept-alive
connection is still served by a handler thread, so open connections are tracked and shut down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger(__name__)


class JsonApp(Protocol):
    def handle(
        self, method: str, path: str, body: bytes, authorization: str | None
    ) -> tuple[int, Any] | tuple[int, Any, dict[str, str]]:
        """Status, JSON payload (None: empty body) and optionally extra headers for one request."""
        ...


class JsonServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: bursts of 100+ connects must not be refused
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: JsonApp) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can hang on machines without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer (and stop()) are routine here, not worth a traceback on stderr.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def _server(self) -> JsonServer:
        assert isinstance(self.server, JsonServer)
        return self.server

    def setup(self) -> None:
        super().setup()
        self._server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server.untrack(self.connection)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._reply(400, {"detail": "bad Content-Length"})
            return
        body = self.rfile.read(length) if length > 0 else b""
        try:
            authorization = self.headers.get("Authorization")
            reply = self._server.app.handle(method, self.path, body, authorization)
        except Exception:
            log.exception("stand-in failed on %s %s", method, self.path)
            reply = 500, {"object": "error", "message": "stand-in internal error",
                          "type": "InternalServerError", "param": None, "code": 500}
        self._reply(reply[0], reply[1], reply[2] if len(reply) == 3 else {})

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)
