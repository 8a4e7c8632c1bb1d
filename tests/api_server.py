"""The HTTP API served by a real uvicorn server on a loopback port, in a thread of the test process."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from producers.api import create_app
from tests.services import free_port
from worker.settings import Settings

API_KEY = "test-key-0123456789"


@contextlib.contextmanager
def running_api(settings: Settings) -> Iterator[str]:
    """Serve `create_app(settings)` until the block ends; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def poll(api: httpx.Client, moderation_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """The moderation's body once it is no longer pending (or the last pending one after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = api.get(f"/v1/moderations/{moderation_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "pending" or time.monotonic() > deadline:
            return body
        time.sleep(0.1)
