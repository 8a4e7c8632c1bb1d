"""`ChatCompletionsClient`: the one HTTP boundary to every OpenAI-compatible chat-completions server.

SGLang, vLLM and hosted OpenAI-compatible endpoints share the transport, the in-flight window and the meaning
of status codes; they differ only in how a request body asks for constraints and log-probabilities, which a
small `ChatDialect` object says (`worker.inference.dialects`). This module is the one place where httpx errors
become `worker.errors` exceptions:

    unreachable, timed out, 429, 5xx, malformed 2xx  -> InferenceUnavailable (retry later; Retry-After honoured)
    400/413/422 (undecodable image, prompt too long) -> ModerationFailed inference_rejected (retrying cannot help)
    401/403 (refused API key)                        -> ModerationFailed inference_rejected, naming the setting

One instance is shared by every thread of a worker process: one pooled `httpx.Client` (thread-safe) and a
window (`worker.inference.adaptive_window`), so the process never has more generations in flight than the
window allows however many Celery threads call it. The server batches whatever is in flight, so the window
is the process's batch size: adaptive by default (it learns from each answer's round trip and from 503/429
"queue full"), at most `inflight_window`.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.adaptive_window import FixedWindow, Window
from worker.inference.base import Completion, Constraint, VisionRequest
from worker.inference.sglang_wire import (
    CHAT_PATH,
    MODELS_PATH,
    MalformedResponse,
    error_message,
    parse_completion,
    parse_model_id,
    retry_after_s,
)

REJECTED_STATUSES = frozenset({400, 413, 422})
"""The server read the request and refused its content: the same request will fail again."""
OVERLOAD_STATUSES = frozenset({429, 503})
"""The server is full (SGLang: 503 "The request queue is full."): the window must shrink."""
KEY_REFUSED_STATUSES = frozenset({401, 403})
"""The server refused this worker's API key: every request will fail again."""


class ChatDialect(Protocol):
    """How one server family spells a chat-completions request; wire only, no I/O, no LlavaGuard meaning."""

    @property
    def backend(self) -> str:
        """The backend name recorded in verdicts (`sglang`, `vllm`, `openai`)."""
        ...

    @property
    def server(self) -> str:
        """How error messages name the server ("SGLang", "vLLM", "the OpenAI-compatible server")."""
        ...

    @property
    def key_setting(self) -> str:
        """The setting that holds this backend's API key, named when the server refuses it."""
        ...

    @property
    def health_path(self) -> str | None:
        """A path that answers 200 when the server can generate (None: the models list stands in)."""
        ...

    def constraints(self) -> frozenset[Constraint]: ...

    def body(self, request: VisionRequest, model: str) -> dict[str, Any]:
        """The JSON body for one request to `model`."""
        ...


class ChatCompletionsClient:
    """An `InferenceBackend` over `POST /v1/chat/completions`; `base_url` is the server root.

    `model` is sent in every request and reported in verdicts; None asks `GET /v1/models` once (vLLM serves
    one model under its `--served-model-name`).
    """

    def __init__(
        self,
        base_url: str,
        dialect: ChatDialect,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        inflight_window: int = 16,
        transport: httpx.BaseTransport | None = None,
        window: Window | None = None,
    ) -> None:
        """`window` decides how many requests are in flight (default: exactly `inflight_window`); the
        connection pool is sized for `inflight_window`, its upper bound."""
        if inflight_window < 1:
            raise ValueError("inflight_window must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.dialect = dialect
        self.inflight_window = inflight_window
        self._configured_model = model
        self._window = window or FixedWindow(inflight_window)
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
        body = self.dialect.body(request, self._request_model())
        with self._window.slot() as slot:
            response = self._send("POST", CHAT_PATH, json=body)
            if response.is_success:
                slot.succeeded()
            elif response.status_code in OVERLOAD_STATUSES:
                slot.overloaded()
        payload = self._payload(response)
        try:
            return parse_completion(payload)
        except MalformedResponse as exc:
            raise InferenceUnavailable(f"{self.base_url} sent a malformed completion: {exc}") from exc

    def backend_name(self) -> str:
        return self.dialect.backend

    def constraints(self) -> frozenset[Constraint]:
        return self.dialect.constraints()

    def model_name(self) -> str:
        """The configured name, else asked once and cached: the served name does not change while it runs."""
        if self._configured_model is not None:
            return self._configured_model
        with self._name_lock:
            if self._model_name is None:
                self._model_name = self._fetch_model_name()
            return self._model_name

    def health(self) -> bool:
        """True when the server answers its health path (or its model list) with 200; never raises."""
        try:
            return self._send("GET", self.dialect.health_path or MODELS_PATH).status_code == 200
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

    def _request_model(self) -> str:
        return self.model_name()

    def _fetch_model_name(self) -> str:
        response = self._send("GET", MODELS_PATH)
        self._raise_if_key_refused(response)
        name = parse_model_id(json_or_none(response)) if response.is_success else None
        if name:
            return name
        raise InferenceUnavailable(f"{self.base_url} reports no model name ({MODELS_PATH}: {response.status_code})")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise InferenceUnavailable(f"{self.base_url}{path} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise InferenceUnavailable(f"cannot reach {self.base_url}{path}: {exc!r}") from exc

    def _payload(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx answer; anything else becomes the error the caller must act on."""
        server = self.dialect.server
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise InferenceUnavailable(
                    f"{server} at {self.base_url} answered {response.status_code} with a body that is not JSON"
                ) from exc
        self._raise_if_key_refused(response)
        message = error_message(json_or_none(response), response.text)
        if response.status_code in REJECTED_STATUSES:
            raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, message)
        raise InferenceUnavailable(
            f"{server} at {self.base_url} answered {response.status_code}: {message}",
            retry_after_s=retry_after_s(response.headers.get("retry-after")),
        )

    def _raise_if_key_refused(self, response: httpx.Response) -> None:
        if response.status_code in KEY_REFUSED_STATUSES:
            raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, (
                f"{self.dialect.server} at {self.base_url} refused this worker's API key "
                f"({response.status_code}): check {self.dialect.key_setting} against the server's key"
            ))


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
