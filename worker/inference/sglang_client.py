"""`SGLangClient`: the HTTP boundary to an SGLang server (any OpenAI-compatible server works for `complete`).

It knows endpoints, headers and status codes, and nothing about LlavaGuard. It is the one place where httpx
errors become `worker.errors` exceptions: unreachable, slow, overloaded or broken server ->
InferenceUnavailable (retry later); a request the server refuses (400: undecodable image, prompt too long)
-> ModerationFailed (retrying cannot help). So is a refused API key (401/403): a configuration error that no
retry fixes, so every moderation fails `inference_rejected` at once (and the worker says so at start,
`worker.inference.preflight`) instead of waiting through the retry budget.

One instance is shared by every thread of a worker process: it holds one pooled `httpx.Client` (thread-safe)
and a semaphore, so the process never has more than `inflight_window` generations in flight however many
Celery threads call it. The server batches whatever is in flight, so the window is the process's batch size.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Self

import httpx

from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.base import Completion, Constraint, VisionRequest
from worker.inference.sglang_wire import (
    CHAT_PATH,
    HEALTH_PATH,
    MODEL_INFO_PATH,
    MODELS_PATH,
    MalformedResponse,
    chat_body,
    error_message,
    parse_completion,
    parse_model_id,
    parse_model_info,
    retry_after_s,
)

REJECTED_STATUSES = frozenset({400, 413, 422})
"""The server read the request and refused its content: the same request will fail again."""
KEY_REFUSED_STATUSES = frozenset({401, 403})
"""The server refused this worker's API key (`LLAVAGUARD_SGLANG_API_KEY`): every request will fail again."""


class SGLangClient:
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
    ) -> None:
        if inflight_window < 1:
            raise ValueError("inflight_window must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.inflight_window = inflight_window
        self._model = model  # SGLang ignores the `model` field; other servers route on it.
        self._window = threading.BoundedSemaphore(inflight_window)
        self._name_lock = threading.Lock()
        self._model_name: str | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        spare = 4  # model_name()/health() must not wait behind generations for a connection.
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=inflight_window + spare, max_keepalive_connections=inflight_window + spare
            ),
            transport=transport,
        )

    def complete(self, request: VisionRequest) -> Completion:
        body = chat_body(request, self._model)
        with self._window:
            response = self._send("POST", CHAT_PATH, json=body)
        payload = self._payload(response)
        try:
            return parse_completion(payload)
        except MalformedResponse as exc:
            raise InferenceUnavailable(f"{self.base_url} sent a malformed completion: {exc}") from exc

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

    def health(self) -> bool:
        """True when `GET /health` answers 200 (SGLang generates a token to check); never raises."""
        try:
            return self._send("GET", HEALTH_PATH).status_code == 200
        except InferenceUnavailable:
            return False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _fetch_model_name(self) -> str:
        # /v1/models is the OpenAI-compatible way; /model_info is SGLang's own, kept as a fallback.
        statuses = []
        for path, reader in ((MODELS_PATH, parse_model_id), (MODEL_INFO_PATH, parse_model_info)):
            response = self._send("GET", path)
            self._raise_if_key_refused(response)
            name = reader(_json_or_none(response)) if response.is_success else None
            if name:
                return name
            statuses.append(f"{path}: {response.status_code}")
        raise InferenceUnavailable(f"{self.base_url} reports no model name ({', '.join(statuses)})")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise InferenceUnavailable(f"{self.base_url}{path} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise InferenceUnavailable(f"cannot reach {self.base_url}{path}: {exc!r}") from exc

    def _payload(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx answer; anything else becomes the error the caller must act on."""
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise InferenceUnavailable(
                    f"SGLang at {self.base_url} answered {response.status_code} with a body that is not JSON"
                ) from exc
        self._raise_if_key_refused(response)
        message = error_message(_json_or_none(response), response.text)
        if response.status_code in REJECTED_STATUSES:
            raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, message)
        raise InferenceUnavailable(
            f"SGLang at {self.base_url} answered {response.status_code}: {message}",
            retry_after_s=retry_after_s(response.headers.get("retry-after")),
        )

    def _raise_if_key_refused(self, response: httpx.Response) -> None:
        if response.status_code in KEY_REFUSED_STATUSES:
            raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, (
                f"SGLang at {self.base_url} refused this worker's API key ({response.status_code}): "
                "check LLAVAGUARD_SGLANG_API_KEY against the server's --api-key"
            ))


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
