"""The dialects' request bodies, log-probabilities on the wire, and `LLAVAGUARD_BACKEND` in composition."""

from __future__ import annotations

import math
from typing import Any

import pytest

from worker.composition import inference_backend
from worker.errors import SettingsError
from worker.inference.base import TokenLogprob, VisionRequest
from worker.inference.chat_client import ChatCompletionsClient
from worker.inference.dialects import OPENAI, SGLANG, VLLM
from worker.inference.llavaguard import ASSESSMENT_SCHEMA
from worker.inference.logprob_wire import logprob_params, parse_logprobs
from worker.inference.sglang_client import SGLangClient
from worker.inference.sglang_wire import parse_completion
from worker.inference.training_format import OUTPUT_REGEX
from worker.settings import load_settings


def request(**overrides: Any) -> VisionRequest:
    fields: dict[str, Any] = dict(image=b"img", mime="image/png", prompt="policy", temperature=0.2, top_p=0.95,
                                  top_k=50, max_tokens=500)
    return VisionRequest(**{**fields, **overrides})


def test_vllm_regex_goes_in_structured_outputs_and_schema_in_response_format() -> None:
    regex = VLLM.body(request(regex=OUTPUT_REGEX, top_logprobs=5), "served")
    assert regex["structured_outputs"] == {"regex": OUTPUT_REGEX}
    assert "response_format" not in regex and "guided_regex" not in regex
    assert (regex["model"], regex["top_k"], regex["logprobs"], regex["top_logprobs"]) == ("served", 50, True, 5)
    schema = VLLM.body(request(json_schema=ASSESSMENT_SCHEMA), "served")
    assert schema["response_format"]["json_schema"]["schema"] == ASSESSMENT_SCHEMA
    assert "structured_outputs" not in schema and "logprobs" not in schema
    assert VLLM.constraints() == {"regex", "json_schema", "none"}


def test_openai_sends_only_fields_openai_knows() -> None:
    body = OPENAI.body(request(json_schema=ASSESSMENT_SCHEMA, top_logprobs=50), "gpt-4o-mini")
    assert set(body) == {"model", "messages", "temperature", "top_p", "max_completion_tokens", "stream",
                         "logprobs", "top_logprobs", "response_format"}
    assert body["top_logprobs"] == 20  # OpenAI's maximum
    assert body["response_format"]["json_schema"]["strict"] is True
    assert OPENAI.constraints() == {"json_schema", "none"}
    with pytest.raises(ValueError, match="no regex"):
        OPENAI.body(request(regex=OUTPUT_REGEX), "gpt-4o-mini")


def test_every_dialect_puts_the_image_first() -> None:
    for dialect in (SGLANG, VLLM, OPENAI):
        parts = dialect.body(request(), "m")["messages"][0]["content"]
        assert [part["type"] for part in parts] == ["image_url", "text"]
        assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_logprobs_are_asked_only_when_wanted() -> None:
    assert logprob_params(request()) == {}
    assert "logprobs" not in SGLANG.body(request(), "default")
    assert SGLANG.body(request(top_logprobs=2), "default")["top_logprobs"] == 2


def test_parse_logprobs_reads_the_openai_shape() -> None:
    value = {"content": [
        {"token": "Un", "logprob": -0.1, "bytes": [85, 110],
         "top_logprobs": [{"token": "Un", "logprob": -0.1, "bytes": [85, 110]},
                          {"token": "Safe", "logprob": -9999.0, "bytes": None}]},
        {"token": "bytes:\\xc3", "logprob": 1e-9, "bytes": [0xC3], "top_logprobs": []},
    ]}
    assert parse_logprobs(value) == (
        TokenLogprob("Un", -0.1, (("Un", -0.1), ("Safe", -9999.0))),
        TokenLogprob("\ufffd", 0.0, ()),  # part of a character: the bytes win; rounding above 0 is 0
    )


@pytest.mark.parametrize("value", [None, {}, {"content": None}, {"content": []}, {"content": "x"},
                                   {"content": [{"token": 1, "logprob": -1}]},
                                   {"content": [{"token": "a", "logprob": math.nan}]},
                                   {"content": [{"token": "a", "logprob": -1, "top_logprobs": "x"}]}])
def test_missing_or_malformed_logprobs_read_as_none(value: Any) -> None:
    assert parse_logprobs(value) is None


def test_parse_completion_carries_logprobs() -> None:
    payload = {"choices": [{"message": {"content": "a"}, "finish_reason": "stop",
                            "logprobs": {"content": [{"token": "a", "logprob": -0.5, "top_logprobs": []}]}}]}
    assert parse_completion(payload).logprobs == (TokenLogprob("a", -0.5, ()),)


def test_backend_setting_picks_the_backend() -> None:
    default = inference_backend(load_settings(sglang_url="http://sglang:30000"))
    vllm = inference_backend(load_settings(backend="vllm", sglang_url="http://shared:8000"))
    openai = inference_backend(load_settings(backend="openai", inference_url="https://api.example",
                                             inference_model="gpt-4o-mini", inference_api_key="k"))
    try:
        assert isinstance(default, SGLangClient) and default.backend_name() == "sglang"
        assert isinstance(vllm, ChatCompletionsClient) and vllm.backend_name() == "vllm"
        assert vllm.base_url == "http://shared:8000"  # no LLAVAGUARD_INFERENCE_URL: the SGLang URL
        assert isinstance(openai, ChatCompletionsClient) and openai.model_name() == "gpt-4o-mini"
    finally:
        for backend in (default, vllm, openai):
            assert isinstance(backend, ChatCompletionsClient)
            backend.close()


def test_bad_backend_settings_fail_at_start_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="LLAVAGUARD_BACKEND"):
        load_settings(backend="tgi")
    with pytest.raises(SettingsError, match="LLAVAGUARD_INFERENCE_MODEL: required when LLAVAGUARD_BACKEND=openai"):
        load_settings(backend="openai")
    with pytest.raises(SettingsError, match="LLAVAGUARD_TOP_LOGPROBS"):
        load_settings(top_logprobs=21)


def test_transformers_without_its_module_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "worker.inference.transformers_backend", None)  # import fails
    with pytest.raises(SettingsError, match=r"pip install 'llavaguard-worker\[transformers\]'"):
        inference_backend(load_settings(backend="transformers"))
