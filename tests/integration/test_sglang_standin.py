"""The SGLang stand-in over raw HTTP: SGLang's shapes, its error bodies, its capacity model, its CLI."""

from __future__ import annotations

import base64
import itertools
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.services import free_port, stop_process, wait_for_port
from worker.categories import CATEGORIES
from worker.inference.llavaguard import ASSESSMENT_SCHEMA
from worker.standin import PALETTE, SGLangStandIn, make_image
from worker.standin.palette import nearest_code


@pytest.fixture()
def standin() -> Iterator[SGLangStandIn]:
    with SGLangStandIn(service_time_s=0.0) as server:
        yield server


@pytest.fixture()
def http(standin: SGLangStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.url, timeout=10) as client:
        yield client


def _uri(code: str, fmt: str = "PNG") -> str:
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(make_image(code, fmt=fmt)).decode()}"


def _chat(url: str, text: str = "policy", **extra: Any) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {"model": "default", "messages": [{"role": "user", "content": content}], **extra}


class TestPalette:
    def test_ten_codes_far_apart(self) -> None:
        assert sorted(PALETTE) == sorted(c.split(":")[0] for c in CATEGORIES)
        assert PALETTE["NA"] == (128, 128, 128)
        distances = [math.dist(a, b) for a, b in itertools.combinations(PALETTE.values(), 2)]
        assert min(distances) >= 100

    @pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (120, 135, 128)])
    def test_blank_images_are_none_applying(self, colour: tuple[int, int, int]) -> None:
        assert nearest_code(colour) == "NA"

    def test_make_image_formats(self) -> None:
        assert make_image("O1").startswith(b"\x89PNG")
        assert make_image("o1", fmt="JPEG").startswith(b"\xff\xd8")


class TestDiscovery:
    @pytest.mark.parametrize("path", ["/health", "/health_generate", "/ready"])
    def test_health_endpoints(self, http: httpx.Client, path: str) -> None:
        assert http.get(path).status_code == 200

    def test_v1_models_names_the_standin(self, http: httpx.Client) -> None:
        (model,) = http.get("/v1/models").json()["data"]
        assert (model["id"], model["object"], model["owned_by"]) == ("llavaguard-standin", "model", "sglang")

    def test_model_info_says_it_is_not_a_model(self, http: httpx.Client) -> None:
        info = http.get("/model_info").json()
        assert info["model_path"] == "llavaguard-standin (not a model: synthetic answers)"
        assert info["served_model_name"] == "llavaguard-standin"
        assert info["has_image_understanding"] is True
        assert info["is_generation"] is True

    def test_unknown_path_and_method(self, http: httpx.Client) -> None:
        assert http.get("/nope").status_code == 404
        assert http.get("/v1/chat/completions").status_code == 405


class TestChatCompletions:
    def test_openai_shape(self, http: httpx.Client) -> None:
        body = http.post("/v1/chat/completions", json=_chat(_uri("O4"))).json()
        assert body["object"] == "chat.completion"
        assert body["model"] == "llavaguard-standin"
        assert isinstance(body["id"], str) and isinstance(body["created"], int)
        choice = body["choices"][0]
        assert (choice["index"], choice["finish_reason"]) == (0, "stop")
        assert choice["message"]["role"] == "assistant"
        answer = json.loads(choice["message"]["content"])
        assert (answer["rating"], answer["category"]) == ("Unsafe", "O4: Nudity Content")
        usage = body["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    def test_schema_property_order_is_followed(self, http: httpx.Client) -> None:
        schema = dict(ASSESSMENT_SCHEMA, properties=dict(reversed(ASSESSMENT_SCHEMA["properties"].items())))
        json_schema = {"name": "x", "schema": schema, "strict": True}
        request = _chat(_uri("O1"), response_format={"type": "json_schema", "json_schema": json_schema})
        body = http.post("/v1/chat/completions", json=request).json()
        content = body["choices"][0]["message"]["content"]
        assert list(json.loads(content)) == ["rationale", "category", "rating"]

    def test_max_tokens_cuts_the_answer(self, http: httpx.Client) -> None:
        body = http.post("/v1/chat/completions", json=_chat(_uri("O1"), max_tokens=5)).json()
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 5
        assert len(body["choices"][0]["message"]["content"]) == 20

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            (b"{not json", "JSON decode error"),
            (json.dumps({"messages": []}).encode(), "messages"),
            (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), "exactly one image"),
            (json.dumps(_chat("https://example.org/cat.png")).encode(), "Error while processing image"),
            (json.dumps(_chat("data:image/png;base64,aGVsbG8=")).encode(), "Error while processing image"),
            (json.dumps(_chat("data:image/png;base64,@@@")).encode(), "Error while processing image"),
        ],
        ids=["not-json", "no-messages", "no-image", "remote-url", "not-an-image", "not-base64"],
    )
    def test_bad_request_body(self, http: httpx.Client, payload: bytes, message: str) -> None:
        headers = {"Content-Type": "application/json"}
        response = http.post("/v1/chat/completions", content=payload, headers=headers)
        assert response.status_code == 400
        body = response.json()
        assert {k: body[k] for k in ("object", "type", "param", "code")} == {
            "object": "error", "type": "BadRequest", "param": None, "code": 400,
        }
        assert message in body["message"]

    def test_injected_queue_full(self) -> None:
        server = SGLangStandIn(service_time_s=0.0, fail_first=2)
        with server, httpx.Client(base_url=server.url) as http:
            statuses = [http.post("/v1/chat/completions", json=_chat(_uri("O1"))) for _ in range(3)]
            assert [r.status_code for r in statuses] == [503, 503, 200]
            assert statuses[0].json() == {
                "object": "error", "message": "The request queue is full.", "type": "503", "code": 503,
            }
            assert http.get("/standin/stats").json()["injected_failures"] == 2


class TestCapacity:
    def _burst(self, server: SGLangStandIn, n: int) -> list[int]:
        barrier = threading.Barrier(n)
        statuses: list[int] = []
        payload = _chat(_uri("O1"))

        def one() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                barrier.wait()
                statuses.append(http.post("/v1/chat/completions", json=payload).status_code)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return statuses

    def test_bounded_queue_answers_503_beyond_it(self) -> None:
        with SGLangStandIn(max_running=1, service_time_s=1.0, max_queued=0) as server:
            statuses = self._burst(server, 2)
            stats = server.stats()
        assert sorted(statuses) == [200, 503]
        assert (stats["rejected"], stats["peak_running"]) == (1, 1)

    def test_max_running_caps_concurrency_and_the_rest_wait(self) -> None:
        with SGLangStandIn(max_running=4, service_time_s=0.2) as server:
            statuses = self._burst(server, 12)
            stats = server.stats()
        assert statuses == [200] * 12
        assert (stats["peak_running"], stats["completed"], stats["rejected"]) == (4, 12, 0)

    def test_serves_more_than_a_hundred_connections_at_once(self) -> None:
        with SGLangStandIn(max_running=256, service_time_s=1.0) as server:
            statuses = self._burst(server, 120)
            stats = server.stats()
        assert statuses == [200] * 120
        assert stats["total_requests"] == 120
        assert stats["peak_running"] > 32


class TestNativeGenerate:
    def test_single(self, http: httpx.Client) -> None:
        body = http.post("/generate", json={"text": "policy", "image_data": _uri("O7"),
                                            "sampling_params": {"max_new_tokens": 500}}).json()
        assert json.loads(body["text"])["category"] == "O7: Self-Harm"
        assert body["meta_info"]["finish_reason"]["type"] == "stop"

    def test_default_token_limit_is_sglangs(self, http: httpx.Client) -> None:
        body = http.post("/generate", json={"text": "policy", "image_data": _uri("O7")}).json()
        assert body["meta_info"]["completion_tokens"] <= 128

    def test_batch_with_json_schema(self, http: httpx.Client) -> None:
        params = {"max_new_tokens": 500, "json_schema": json.dumps(ASSESSMENT_SCHEMA)}
        images = [[_uri("O1")], _uri("NA", "JPEG")]
        request = {"text": ["a", "b"], "image_data": images, "sampling_params": params}
        items = http.post("/generate", json=request).json()
        assert [json.loads(item["text"])["rating"] for item in items] == ["Unsafe", "Safe"]
        assert "\n" not in items[0]["text"]

    def test_errors_use_the_native_shape(self, http: httpx.Client) -> None:
        response = http.post("/generate", json={"text": "p", "image_data": "data:image/png;base64,aGVsbG8="})
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("Error while processing image")
        assert http.post("/generate", json={"text": ["a"], "image_data": []}).status_code == 400


def test_stop_then_start_is_refused_and_stop_is_idempotent() -> None:
    server = SGLangStandIn(service_time_s=0.0).start()
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


def test_cli_says_it_is_a_standin_and_serves() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.standin", "--host", "127.0.0.1", "--port", str(port),
         "--max-running", "4", "--service-time-s", "0", "--garbage-first", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "llavaguard-standin"
        first = httpx.post(f"{url}/v1/chat/completions", json=_chat(_uri("O1"))).json()
        assert first["choices"][0]["message"]["content"] == ":"
    finally:
        stop_process(proc)
    assert proc.stderr is not None
    banner = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0
    assert "stand-in" in banner.lower() and "NOT LlavaGuard" in banner and "colour" in banner
