from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.harness import LoopbackHTTPServer
from worker.standin.sglang_standin import SGLangStandIn


@pytest.fixture()
def fresh_redis(tmp_path: Path) -> Iterator[str]:
    """A private redis-server per test: no queue state leaks between tests."""
    with services.redis_server(tmp_path) as url:
        yield url


@pytest.fixture()
def standin() -> Iterator[SGLangStandIn]:
    with SGLangStandIn("127.0.0.1", 0, max_running=32, service_time_s=0.01) as server:
        yield server


@pytest.fixture()
def image_server() -> Iterator[LoopbackHTTPServer]:
    server = LoopbackHTTPServer("127.0.0.1")
    yield server
    server.close()
