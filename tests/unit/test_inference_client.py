"""SGLangClient's error translation and caching, against httpx.MockTransport (no server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.base import InferenceBackend, VisionRequest
from worker.inference.sglang_client import SGLangClient

Handler = Callable[[httpx.Request], httpx.Response]
MakeClient = Callable[..., SGLangClient]
REQUEST = VisionRequest(
    image=b"img", mime="image/png", prompt="p", temperature=0.2, top_p=0.95, top_k=50, max_tokens=500
)
COMPLETION = {
    "choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2},
}


@pytest.fixture()
def make_client() -> Iterator[Callable[..., SGLangClient]]:
    clients: list[SGLangClient] = []

    def make(handler: Handler, **kwargs: object) -> SGLangClient:
        client = SGLangClient("http://sglang:30000/", transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _answer(status: int, payload: object = None, **kwargs: object) -> Handler:
    return lambda request: httpx.Response(status, json=payload, **kwargs)  # type: ignore[arg-type]


def test_is_an_inference_backend(make_client: MakeClient) -> None:
    assert isinstance(make_client(_answer(200, COMPLETION)), InferenceBackend)


def test_complete_posts_the_chat_body(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=COMPLETION)

    completion = make_client(handler, api_key="sekret").complete(REQUEST)
    assert (completion.text, completion.finish_reason, completion.prompt_tokens) == ("hello", "stop", 10)
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "http://sglang:30000/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sekret"
    assert json.loads(request.content)["messages"][0]["content"][0]["type"] == "image_url"


def test_400_is_a_permanent_rejection_with_the_server_message(make_client: MakeClient) -> None:
    body = {"object": "error", "message": "Error while processing image: bad", "type": "BadRequest",
            "param": None, "code": 400}
    with pytest.raises(ModerationFailed) as caught:
        make_client(_answer(400, body)).complete(REQUEST)
    assert caught.value.code == ErrorCode.INFERENCE_REJECTED
    assert caught.value.message == "Error while processing image: bad"


def test_503_queue_full_is_transient_with_retry_after(make_client: MakeClient) -> None:
    body = {"object": "error", "message": "The request queue is full.", "type": "503", "code": 503}
    with pytest.raises(InferenceUnavailable, match="queue is full") as caught:
        make_client(_answer(503, body, headers={"Retry-After": "5"})).complete(REQUEST)
    assert caught.value.retry_after_s == 5.0


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_api_key_is_permanent_and_says_which_setting(make_client: MakeClient, status: int) -> None:
    """A configuration error: retrying only delays every moderation's failure by the whole retry budget."""
    with pytest.raises(ModerationFailed, match="LLAVAGUARD_SGLANG_API_KEY") as caught:
        make_client(_answer(status, {"error": "Unauthorized"})).complete(REQUEST)
    assert caught.value.code == ErrorCode.INFERENCE_REJECTED and str(status) in caught.value.message
    with pytest.raises(ModerationFailed, match="API key"):
        make_client(_answer(status, {"error": "Unauthorized"})).model_name()


@pytest.mark.parametrize("status", [500, 502, 504, 404, 429])
def test_other_failures_are_transient(make_client: MakeClient, status: int) -> None:
    with pytest.raises(InferenceUnavailable, match=str(status)) as caught:
        make_client(_answer(status, {"detail": "nope"})).complete(REQUEST)
    assert caught.value.retry_after_s is None


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy</html>"),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"choices": [{"message": {"content": 3}}]}),
    ],
)
def test_malformed_success_is_transient(make_client: MakeClient, response: httpx.Response) -> None:
    with pytest.raises(InferenceUnavailable):
        make_client(lambda request: response).complete(REQUEST)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("hung up")]
)
def test_transport_errors_are_transient(make_client: MakeClient, error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(InferenceUnavailable) as caught:
        make_client(handler).complete(REQUEST)
    assert caught.value.__cause__ is error


def test_model_name_falls_back_to_model_info_and_is_cached(make_client: MakeClient) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(200, json={"model_path": "/m/lg", "served_model_name": "lg-served"})

    client = make_client(handler)
    assert client.model_name() == "lg-served"
    assert client.model_name() == "lg-served"
    assert paths == ["/v1/models", "/model_info"]


def test_model_name_from_v1_models(make_client: MakeClient) -> None:
    client = make_client(_answer(200, {"data": [{"id": "AIML-TUDA/LlavaGuard-v1.2-0.5B-OV"}]}))
    assert client.model_name() == "AIML-TUDA/LlavaGuard-v1.2-0.5B-OV"


def test_no_model_name_anywhere_is_transient_and_not_cached(make_client: MakeClient) -> None:
    found = httpx.Response(200, json={"data": [{"id": "m"}]})
    answers = iter([httpx.Response(404), httpx.Response(404), found])
    client = make_client(lambda request: next(answers))
    with pytest.raises(InferenceUnavailable, match="no model name"):
        client.model_name()
    assert client.model_name() == "m"


def test_health(make_client: MakeClient) -> None:
    assert make_client(_answer(200)).health() is True
    assert make_client(_answer(503)).health() is False

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert make_client(down).health() is False


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="inflight_window"):
        SGLangClient("http://x", inflight_window=0)
