"""The stand-in honours SGLang's `regex` (chat completions and native `/generate`) over raw HTTP on loopback."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from worker.inference.llavaguard import ASSESSMENT_SCHEMA
from worker.inference.training_format import OUTPUT_REGEX, training_layout
from worker.standin import SGLangStandIn, make_image
from worker.standin.cli import build_parser

UNSATISFIABLE = r'\{"rating": "Safe"\}'


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with SGLangStandIn(service_time_s=0.0) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _uri(code: str) -> str:
    return f"data:image/png;base64,{base64.b64encode(make_image(code)).decode()}"


def _chat(code: str, **extra: Any) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": _uri(code)}}, {"type": "text", "text": "policy"}]
    return {"model": "default", "messages": [{"role": "user", "content": content}], "max_tokens": 500, **extra}


def _content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_chat_regex_answers_exactly_the_training_layout(http: httpx.Client) -> None:
    text = _content(http.post("/v1/chat/completions", json=_chat("O3", regex=OUTPUT_REGEX)))
    fields = json.loads(text)
    assert text == training_layout(fields["rating"], fields["category"], fields["rationale"])
    assert re.fullmatch(OUTPUT_REGEX, text)
    assert (fields["rating"], fields["category"]) == ("Unsafe", "O3: Sexual Content")


def test_native_regex_single_and_batch(http: httpx.Client) -> None:
    params = {"max_new_tokens": 500, "regex": OUTPUT_REGEX}
    single = http.post("/generate", json={"text": "p", "image_data": _uri("O9"), "sampling_params": params}).json()
    assert re.fullmatch(OUTPUT_REGEX, single["text"])
    batch = http.post("/generate", json={"text": ["a", "b"], "image_data": [_uri("NA"), _uri("O1")],
                                         "sampling_params": params}).json()
    assert [json.loads(item["text"])["rating"] for item in batch] == ["Safe", "Unsafe"]
    assert all(re.fullmatch(OUTPUT_REGEX, item["text"]) for item in batch)


def test_schema_requests_keep_the_compact_schema_answer(http: httpx.Client) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": ASSESSMENT_SCHEMA, "strict": True}}
    text = _content(http.post("/v1/chat/completions", json=_chat("O4", response_format=schema)))
    assert "\n" not in text and not re.fullmatch(OUTPUT_REGEX, text)


@pytest.mark.parametrize(("pattern", "says"), [(UNSATISFIABLE, "does not match"), ("(unclosed", "missing )")])
def test_a_regex_it_cannot_satisfy_is_sglangs_grammar_error(http: httpx.Client, pattern: str, says: str) -> None:
    chat = http.post("/v1/chat/completions", json=_chat("O2", regex=pattern))
    assert chat.status_code == 400
    body = chat.json()
    assert (body["object"], body["type"], body["code"]) == ("error", "BadRequest", 400)
    assert body["message"].startswith("Invalid grammar request: key=('regex'") and says in body["message"]
    native = http.post("/generate", json={"text": "p", "image_data": _uri("O2"), "sampling_params": {"regex": pattern}})
    assert native.status_code == 400
    assert native.json()["error"]["message"].startswith("Invalid grammar request")


def test_regex_and_a_schema_together_are_refused(http: httpx.Client) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": ASSESSMENT_SCHEMA}}
    response = http.post("/v1/chat/completions", json=_chat("O2", regex=OUTPUT_REGEX, response_format=schema))
    assert response.status_code == 400
    assert "Only one of regex, json_schema, or ebnf" in response.json()["message"]
    params = {"regex": OUTPUT_REGEX, "json_schema": json.dumps(ASSESSMENT_SCHEMA)}
    native = http.post("/generate", json={"text": "p", "image_data": _uri("O2"), "sampling_params": params})
    assert native.status_code == 400
    assert http.post("/v1/chat/completions", json=_chat("O2", regex=7)).status_code == 400


def test_no_regex_refuses_regex_and_still_serves_schemas() -> None:
    assert build_parser().parse_args(["--no-regex"]).regex is False
    assert build_parser().parse_args([]).regex is True
    with SGLangStandIn(service_time_s=0.0, regex=False) as server, httpx.Client(base_url=server.url) as http:
        refused = http.post("/v1/chat/completions", json=_chat("O2", regex=OUTPUT_REGEX))
        schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": ASSESSMENT_SCHEMA}}
        served = http.post("/v1/chat/completions", json=_chat("O2", response_format=schema))
    assert refused.status_code == 400
    assert "does not support regex" in refused.json()["message"]
    assert json.loads(_content(served))["category"] == "O2: Violence, Harm, or Cruelty"
