from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.categories import CATEGORIES
from worker.inference.base import Constraint, VisionRequest
from worker.inference.llavaguard import ASSESSMENT_SCHEMA, LlavaGuardJudge
from worker.inference.sglang_wire import (
    MalformedResponse,
    chat_body,
    error_message,
    parse_completion,
    parse_model_id,
    parse_model_info,
    retry_after_s,
)
from worker.inference.training_format import OUTPUT_REGEX


def _request(**overrides: Any) -> VisionRequest:
    values: dict[str, Any] = {
        "image": b"\x89PNG...", "mime": "image/png", "prompt": "the policy", "temperature": 0.2,
        "top_p": 0.95, "top_k": 50, "max_tokens": 500,
    }
    return VisionRequest(**(values | overrides))


class TestChatBody:
    def test_one_user_message_image_part_first(self) -> None:
        body = chat_body(_request())
        assert len(body["messages"]) == 1
        message = body["messages"][0]
        assert message["role"] == "user"
        image, text = message["content"]
        assert image["type"] == "image_url"
        encoded = base64.b64encode(b"\x89PNG...").decode()
        assert image["image_url"]["url"] == f"data:image/png;base64,{encoded}"
        assert text == {"type": "text", "text": "the policy"}

    def test_sampling_values_are_sent(self) -> None:
        body = chat_body(_request(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=64))
        assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (0.0, 1.0, -1, 64)
        assert body["stream"] is False

    def test_no_response_format_without_a_schema(self) -> None:
        assert "response_format" not in chat_body(_request())

    def test_schema_becomes_a_strict_json_schema_response_format(self) -> None:
        body = chat_body(_request(json_schema=ASSESSMENT_SCHEMA))
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "llavaguard_assessment", "schema": ASSESSMENT_SCHEMA, "strict": True},
        }

    def test_regex_is_sglangs_own_field_and_the_only_constraint(self) -> None:
        body = chat_body(_request(regex=OUTPUT_REGEX))
        assert body["regex"] == OUTPUT_REGEX
        assert "response_format" not in body
        both = chat_body(_request(regex=OUTPUT_REGEX, json_schema=ASSESSMENT_SCHEMA))
        assert "response_format" not in both  # SGLang takes one of regex / json_schema / ebnf
        assert "regex" not in chat_body(_request(json_schema=ASSESSMENT_SCHEMA))


class TestAssessmentSchema:
    def test_properties_in_generation_order(self) -> None:
        assert list(ASSESSMENT_SCHEMA["properties"]) == ["rating", "category", "rationale"]

    def test_enums(self) -> None:
        properties = ASSESSMENT_SCHEMA["properties"]
        assert properties["rating"]["enum"] == ["Unsafe", "Safe"]
        assert properties["category"]["enum"] == list(CATEGORIES)
        assert len(properties["category"]["enum"]) == 10
        assert properties["rationale"] == {"type": "string"}

    def test_closed_and_all_required(self) -> None:
        assert ASSESSMENT_SCHEMA["required"] == ["rating", "category", "rationale"]
        assert ASSESSMENT_SCHEMA["additionalProperties"] is False
        assert ASSESSMENT_SCHEMA["type"] == "object"


class TestParseCompletion:
    def test_reads_text_reason_and_usage(self) -> None:
        payload = {
            "choices": [{"message": {"content": "{}"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3000, "completion_tokens": 500},
        }
        completion = parse_completion(payload)
        assert (completion.text, completion.finish_reason) == ("{}", "length")
        assert (completion.prompt_tokens, completion.completion_tokens) == (3000, 500)

    def test_usage_is_optional(self) -> None:
        completion = parse_completion({"choices": [{"message": {"content": "x"}}]})
        assert completion.finish_reason is None
        assert completion.prompt_tokens is None
        assert completion.completion_tokens is None

    @pytest.mark.parametrize(
        "payload",
        [{}, {"choices": []}, {"choices": [{}]}, {"choices": [{"message": {"content": None}}]}, [], "text"],
    )
    def test_malformed(self, payload: Any) -> None:
        with pytest.raises(MalformedResponse):
            parse_completion(payload)


class TestModelName:
    def test_v1_models(self) -> None:
        assert parse_model_id({"data": [{"id": "AIML-TUDA/LlavaGuard-v1.2-0.5B-OV"}]}) == (
            "AIML-TUDA/LlavaGuard-v1.2-0.5B-OV"
        )

    @pytest.mark.parametrize("payload", [{}, {"data": []}, {"data": [{"id": ""}]}, None])
    def test_v1_models_missing(self, payload: Any) -> None:
        assert parse_model_id(payload) is None

    def test_model_info_prefers_the_served_name(self) -> None:
        assert parse_model_info({"served_model_name": "lg", "model_path": "/models/lg"}) == "lg"
        assert parse_model_info({"model_path": "/models/lg"}) == "/models/lg"
        assert parse_model_info({"served_model_name": None}) is None


class TestErrorMessage:
    @pytest.mark.parametrize(
        "payload",
        [
            {"object": "error", "message": "boom", "type": "BadRequest", "param": None, "code": 400},
            {"error": {"message": "boom"}},
            {"detail": "boom"},
            {"error": "boom"},
        ],
    )
    def test_known_shapes(self, payload: Any) -> None:
        assert error_message(payload, "fallback") == "boom"

    def test_fallback_is_the_body_text(self) -> None:
        assert error_message(None, " <html>Bad Gateway</html> ") == "<html>Bad Gateway</html>"
        assert error_message(None, "") == "(empty body)"


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert retry_after_s("7") == 7.0

    def test_http_date(self) -> None:
        now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
        assert retry_after_s("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0

    @pytest.mark.parametrize("header", [None, "", "soon", "-3", "1.5e3"])  # delta-seconds are digits (RFC 9110)
    def test_absent_or_unreadable(self, header: str | None) -> None:
        assert retry_after_s(header) is None


def test_judge_builds_constrained_and_free_requests() -> None:
    class NoBackend:
        def model_name(self) -> str:
            raise AssertionError

        def constraints(self) -> frozenset[Constraint]:
            return frozenset({"json_schema", "none"})

        def complete(self, request: VisionRequest) -> Any:
            raise AssertionError

    constrained = LlavaGuardJudge(NoBackend()).request(b"img", "image/jpeg", "p")
    assert constrained.json_schema == ASSESSMENT_SCHEMA
    assert (constrained.temperature, constrained.top_p, constrained.top_k, constrained.max_tokens) == (
        0.2, 0.95, 50, 500,
    )
    free = LlavaGuardJudge(NoBackend(), constrained=False, temperature=0.0).request(b"img", "image/jpeg", "p")
    assert free.json_schema is None
    assert free.temperature == 0.0
