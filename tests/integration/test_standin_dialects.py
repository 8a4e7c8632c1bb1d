"""The stand-in's dialects and log-probabilities over real HTTP: what each server accepts, exact scores.

Exact scores are the stand-in's documented rule (`worker/standin/logprobs.py`): 0.99 sure within 5 RGB units of
a palette colour, 0.05 less per further whole 5 units, at least 0.51; P(Unsafe) is that for an Unsafe answer,
one minus it for Safe.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from worker.inference.chat_client import ChatCompletionsClient
from worker.inference.dialects import OPENAI, VLLM
from worker.inference.llavaguard import LlavaGuardJudge
from worker.inference.scoring import rating_score
from worker.inference.sglang_client import SGLangClient
from worker.inference.training_format import OUTPUT_REGEX
from worker.policy import PolicyRegistry
from worker.standin import STANDIN_MODEL, SGLangStandIn, make_image
from worker.standin.dialects import DialectName

PROMPT = PolicyRegistry().prompt("llavaguard-v1.2")


def solid(rgb: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def client_for(dialect: DialectName, url: str) -> ChatCompletionsClient:
    if dialect == "sglang":
        return SGLangClient(url)
    return ChatCompletionsClient(url, VLLM if dialect == "vllm" else OPENAI,
                                 model=STANDIN_MODEL if dialect == "openai" else None)


@pytest.fixture(params=["sglang", "vllm", "openai"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[DialectName, ChatCompletionsClient]]:
    dialect: DialectName = request.param
    with SGLangStandIn(service_time_s=0.0, dialect=dialect) as standin, client_for(dialect, standin.url) as client:
        yield dialect, client


O1, O2, NA = "O1: Hate, Humiliation, Harassment", "O2: Violence, Harm, or Cruelty", "NA: None applying"


@pytest.mark.parametrize(("image", "rating", "score", "categories"), [
    (make_image("O1"), "Unsafe", 0.99, {O1: 0.99, O2: 0.01}),  # on the palette: sure
    (make_image("NA"), "Safe", 0.01, {NA: 1.0}),  # NA's alternative `O` names no one category
    (solid((255, 42, 0)), "Unsafe", 0.59, {O1: 0.59, O2: 0.41}),  # 42 units off red: 8 whole steps, 0.99 - 0.40
    (solid((128, 128, 160)), "Safe", 0.31, {NA: 1.0}),  # 32 units off grey: Safe with 0.69
    (solid((200, 60, 60)), "Unsafe", 0.51, {O1: 0.51, O2: 0.49}),  # far off the palette: the floor
])
def test_exact_scores_in_every_dialect(
    served: tuple[DialectName, ChatCompletionsClient], image: bytes, rating: str, score: float,
    categories: dict[str, float],
) -> None:
    dialect, client = served
    judgement = LlavaGuardJudge(client, top_logprobs=5).judge(image, "image/png", PROMPT)
    assert judgement.assessment.rating == rating
    assert (judgement.backend, judgement.score_source) == (dialect, "logprobs")
    assert judgement.score == pytest.approx(score, abs=1e-9)
    assert judgement.category_scores == pytest.approx(categories, abs=1e-9)


def test_unconstrained_answers_are_scored_where_the_rating_is_split(
    served: tuple[DialectName, ChatCompletionsClient],
) -> None:
    """Free text in the training layout: `Unsafe` arrives as `Un` + `safe`, decided at `Un`."""
    _, client = served
    judgement = LlavaGuardJudge(client, top_logprobs=2, constrained=False).judge(
        make_image("O3"), "image/png", PROMPT
    )
    assert judgement.constraint == "none"
    assert judgement.score == pytest.approx(0.99)


def test_garbage_has_no_rating_to_score_and_a_reasked_answer_is_scored() -> None:
    with SGLangStandIn(service_time_s=0.0, garbage_first=1) as standin, SGLangClient(standin.url) as client:
        request = LlavaGuardJudge(client, top_logprobs=5).request(make_image("O1"), "image/png", PROMPT)
        garbage = client.complete(request)
    assert garbage.text == ":" and rating_score(garbage.logprobs).source == "rating_not_found"
    with SGLangStandIn(service_time_s=0.0, garbage_first=1) as standin, SGLangClient(standin.url) as client:
        judgement = LlavaGuardJudge(client, top_logprobs=5).judge(make_image("O1"), "image/png", PROMPT)
    assert judgement.attempts == 2  # the ':' answer was re-asked; the score is the parsed answer's
    assert judgement.score == pytest.approx(0.99)


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10.0)


def chat(**extra: Any) -> dict[str, Any]:
    uri = "data:image/png;base64," + base64.b64encode(make_image("O1")).decode()
    return {"model": STANDIN_MODEL, "max_tokens": 300, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": PROMPT}]}], **extra}


@pytest.mark.parametrize("field", ["top_k", "regex", "guided_json", "guided_regex", "structured_outputs"])
def test_openai_refuses_fields_it_does_not_know(field: str) -> None:
    with SGLangStandIn(service_time_s=0.0, dialect="openai") as standin:
        response = post(standin.url, chat(**{field: {"regex": ".*"} if field == "structured_outputs" else 5}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"Unrecognized request argument supplied: {field}"


def test_openai_answers_429_with_retry_after_when_busy() -> None:
    with SGLangStandIn(service_time_s=0.0, dialect="openai", fail_first=1, retry_after_s=3) as standin:
        busy, then = post(standin.url, chat()), post(standin.url, chat())
    assert (busy.status_code, busy.headers["retry-after"], then.status_code) == (429, "3", 200)


def test_vllm_honours_structured_outputs_and_ignores_the_removed_guided_fields() -> None:
    schema = {"type": "object", "properties": {"category": {"type": "string"}, "rating": {"type": "string"}}}
    with SGLangStandIn(service_time_s=0.0, dialect="vllm") as standin:
        constrained = post(standin.url, chat(structured_outputs={"json": schema}))
        legacy = post(standin.url, chat(guided_json=schema))
        both = post(standin.url, chat(structured_outputs={"json": schema, "regex": ".*"}))
        wrong_model = post(standin.url, chat(model="gpt-4o"))
        regex = post(standin.url, chat(structured_outputs={"regex": OUTPUT_REGEX}))
    assert constrained.json()["choices"][0]["message"]["content"].startswith('{"category": ')
    assert legacy.json()["choices"][0]["message"]["content"].startswith('{\n    "rating": ')  # fails open
    assert both.status_code == 400 and "one kind of structured outputs" in both.json()["error"]["message"]
    assert wrong_model.status_code == 404 and wrong_model.json()["error"]["type"] == "NotFoundError"
    assert re.fullmatch(OUTPUT_REGEX, regex.json()["choices"][0]["message"]["content"])


def test_chat_logprobs_have_the_openai_shape() -> None:
    with SGLangStandIn(service_time_s=0.0) as standin:
        plain = post(standin.url, chat()).json()["choices"][0]
        asked = post(standin.url, chat(logprobs=True, top_logprobs=3)).json()["choices"][0]
        too_many = post(standin.url, chat(logprobs=True, top_logprobs=21))
    assert plain["logprobs"] is None  # unchanged unless asked
    content = asked["logprobs"]["content"]
    assert "".join(entry["token"] for entry in content) == asked["message"]["content"]
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert bytes(entry["bytes"]).decode() == entry["token"]
        assert len(entry["top_logprobs"]) == 3 and entry["top_logprobs"][0]["token"] == entry["token"]
        assert all(set(alternative) == {"token", "logprob", "bytes"} for alternative in entry["top_logprobs"])
    assert too_many.status_code == 400


def test_native_generate_logprobs_when_asked() -> None:
    uri = base64.b64encode(make_image("NA")).decode()
    body = {"text": "<image>" + PROMPT, "image_data": uri, "sampling_params": {"max_new_tokens": 300},
            "return_logprob": True, "top_logprobs_num": 2, "return_text_in_logprobs": True}
    with SGLangStandIn(service_time_s=0.0) as standin:
        item = httpx.post(f"{standin.url}/generate", json=body, timeout=10.0).json()
        bare = httpx.post(f"{standin.url}/generate", json={**body, "return_logprob": False}, timeout=10.0).json()
    meta = item["meta_info"]
    assert "".join(token for _, _, token in meta["output_token_logprobs"]) == item["text"]
    assert all(len(top) == 2 for top in meta["output_top_logprobs"])
    deciding = next(top for top in meta["output_top_logprobs"] if top[0][2] == "Safe")
    assert [(text, round(logprob, 6)) for logprob, _, text in deciding] == [("Safe", -0.01005), ("Un", -4.60517)]
    assert "output_token_logprobs" not in bare["meta_info"]
