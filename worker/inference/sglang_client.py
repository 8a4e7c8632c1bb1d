"""`SGLangClient`: the SGLang dialect of `ChatCompletionsClient`, plus SGLang's own model-info fallback.

Transport, in-flight window and error translation are `worker.inference.chat_client`'s (shared with vLLM and
OpenAI-compatible servers); this class adds what only SGLang has: `/model_info` when `/v1/models` says
nothing, and the constraints SGLang honours. A refused API key (401/403) fails every moderation
`inference_rejected` at once (and the worker says so at start, `worker.inference.preflight`) instead of
waiting through the retry budget.
"""

from __future__ import annotations

import httpx

from worker.errors import InferenceUnavailable
from worker.inference.adaptive_window import Window
from worker.inference.base import Constraint
from worker.inference.chat_client import ChatCompletionsClient, json_or_none
from worker.inference.dialects import SGLANG
from worker.inference.sglang_wire import MODEL_INFO_PATH, MODELS_PATH, parse_model_id, parse_model_info


class SGLangClient(ChatCompletionsClient):
    """An `InferenceBackend` over SGLang's HTTP API; `base_url` is the server root, e.g. `http://sglang:30000`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        inflight_window: int = 16,
        model: str = "default",
        transport: httpx.BaseTransport | None = None,
        window: Window | None = None,
    ) -> None:
        super().__init__(
            base_url, SGLANG, api_key=api_key, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
            inflight_window=inflight_window, transport=transport, window=window,
        )
        self._model = model  # SGLang ignores the `model` field; other servers route on it.

    def backend_name(self) -> str:
        return "sglang"

    def constraints(self) -> frozenset[Constraint]:
        """SGLang honours its `regex` field and `response_format` JSON schemas (a build that refuses one
        says so with a 400, and the judge falls back: `worker.inference.constraint_choice`)."""
        return frozenset({"regex", "json_schema", "none"})

    def model_name(self) -> str:
        """Asked once, then cached: the served name does not change while the server runs."""
        with self._name_lock:
            if self._model_name is None:
                self._model_name = self._fetch_model_name()
            return self._model_name

    def _request_model(self) -> str:
        return self._model

    def _fetch_model_name(self) -> str:
        # /v1/models is the OpenAI-compatible way; /model_info is SGLang's own, kept as a fallback.
        statuses = []
        for path, reader in ((MODELS_PATH, parse_model_id), (MODEL_INFO_PATH, parse_model_info)):
            response = self._send("GET", path)
            self._raise_if_key_refused(response)
            name = reader(json_or_none(response)) if response.is_success else None
            if name:
                return name
            statuses.append(f"{path}: {response.status_code}")
        raise InferenceUnavailable(f"{self.base_url} reports no model name ({', '.join(statuses)})")
