"""The backend contract for the HTTP backends, each against the stand-in speaking its server's dialect.

Real HTTP on loopback: one stand-in per test (a thread, milliseconds to start). "Unavailable" is a port nobody
listens on, "overloaded" a stand-in whose every answer is its dialect's busy reply with Retry-After,
"refuses input" the ordinary stand-in, which answers an unreadable image with its dialect's 400.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import ClassVar

import pytest

from tests.contract.backend_contract import BackendContract, FaultKind, FaultyBackend
from worker.inference.base import InferenceBackend
from worker.inference.chat_client import ChatCompletionsClient
from worker.inference.dialects import OPENAI, VLLM
from worker.inference.sglang_client import SGLangClient
from worker.standin import STANDIN_MODEL, SGLangStandIn
from worker.standin.dialects import DialectName

RETRY_AFTER_S = 7.0


def closed_port_url() -> str:
    """A loopback URL nobody listens on (the port was free a moment ago and is not listened on)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class StandInBackendContract(BackendContract):
    """The contract against `SGLangStandIn(dialect=...)`; a subclass says how its client is built."""

    dialect: ClassVar[DialectName]
    overload_retry_after_s = RETRY_AFTER_S

    def client(self, url: str) -> ChatCompletionsClient:
        raise NotImplementedError

    @pytest.fixture
    def backend(self) -> Iterator[InferenceBackend]:
        with SGLangStandIn(service_time_s=0.0, dialect=self.dialect) as standin, self.client(standin.url) as client:
            yield client

    @pytest.fixture
    def faulty(self) -> Iterator[FaultyBackend]:
        opened: list[SGLangStandIn | ChatCompletionsClient] = []

        def build(kind: FaultKind) -> InferenceBackend:
            if kind == "unavailable":
                url = closed_port_url()
            else:
                standin = SGLangStandIn(
                    service_time_s=0.0, dialect=self.dialect, retry_after_s=RETRY_AFTER_S,
                    fail_first=1000 if kind == "overloaded" else 0,
                ).start()
                opened.append(standin)
                url = standin.url
            client = self.client(url)
            opened.append(client)
            return client

        yield build
        for thing in reversed(opened):
            thing.stop() if isinstance(thing, SGLangStandIn) else thing.close()


class TestSGLangBackend(StandInBackendContract):
    backend_name = "sglang"
    dialect = "sglang"

    def client(self, url: str) -> ChatCompletionsClient:
        return SGLangClient(url, connect_timeout_s=1.0)


class TestVLLMBackend(StandInBackendContract):
    backend_name = "vllm"
    dialect = "vllm"

    def client(self, url: str) -> ChatCompletionsClient:
        return ChatCompletionsClient(url, VLLM, connect_timeout_s=1.0)  # the model name from /v1/models


class TestOpenAIBackend(StandInBackendContract):
    backend_name = "openai"
    dialect = "openai"

    def client(self, url: str) -> ChatCompletionsClient:
        return ChatCompletionsClient(url, OPENAI, model=STANDIN_MODEL, connect_timeout_s=1.0)
