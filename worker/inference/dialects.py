"""The chat-completions dialects: how SGLang, vLLM and hosted OpenAI-compatible servers spell one request.

All three take the same messages (image part first, then the policy text) and the same `logprobs`/
`top_logprobs`; they differ in what else they accept, and an unknown field is not harmless everywhere:

    sglang  `response_format` json_schema; `top_k`; (`regex`: `sglang_wire.chat_body`, issue 14 item 3)
    vllm    `structured_outputs: {"regex": ...}` (vLLM >= 0.10.2; the older top-level `guided_regex` was removed
            in 0.12 and is silently ignored there, so a constraint sent that way fails open), JSON schema as
            `response_format` json_schema (all versions since 0.6); `top_k` accepted
    openai  no regex, no `top_k` (OpenAI answers 400 to unknown parameters); `response_format` json_schema with
            `strict: true`; `max_completion_tokens` (OpenAI's current name for the limit)

Wire only: no I/O, nothing about what the prompt means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.inference.base import Constraint, VisionRequest
from worker.inference.logprob_wire import logprob_params
from worker.inference.sglang_wire import SCHEMA_NAME, chat_body, data_uri

BACKENDS = ("sglang", "vllm", "openai", "transformers")
"""`LLAVAGUARD_BACKEND` values; the first three speak HTTP through `ChatCompletionsClient`."""


def user_message(request: VisionRequest) -> dict[str, Any]:
    """One user message, image part first: the order LlavaGuard was trained on (no literal `<image>`)."""
    return {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": data_uri(request.image, request.mime)}},
            {"type": "text", "text": request.prompt},
        ],
    }


def json_schema_format(schema: Any) -> dict[str, Any]:
    """`response_format` for a JSON schema; `strict` so OpenAI enforces it instead of treating it as a hint."""
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": dict(schema), "strict": True}}


@dataclass(frozen=True)
class SGLangDialect:
    backend: str = "sglang"
    server: str = "SGLang"
    key_setting: str = "LLAVAGUARD_SGLANG_API_KEY"
    health_path: str | None = "/health"

    def constraints(self) -> frozenset[Constraint]:
        return frozenset({"json_schema", "none"})

    def body(self, request: VisionRequest, model: str) -> dict[str, Any]:
        return chat_body(request, model)


@dataclass(frozen=True)
class VLLMDialect:
    backend: str = "vllm"
    server: str = "vLLM"
    key_setting: str = "LLAVAGUARD_INFERENCE_API_KEY"
    health_path: str | None = "/health"

    def constraints(self) -> frozenset[Constraint]:
        return frozenset({"regex", "json_schema", "none"})

    def body(self, request: VisionRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model, "messages": [user_message(request)],
            "temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k,
            "max_tokens": request.max_tokens, "stream": False, **logprob_params(request),
        }
        if request.regex is not None:
            body["structured_outputs"] = {"regex": request.regex}
        elif request.json_schema is not None:
            body["response_format"] = json_schema_format(request.json_schema)
        return body


@dataclass(frozen=True)
class OpenAIDialect:
    backend: str = "openai"
    server: str = "the OpenAI-compatible server"
    key_setting: str = "LLAVAGUARD_INFERENCE_API_KEY"
    health_path: str | None = None

    def constraints(self) -> frozenset[Constraint]:
        return frozenset({"json_schema", "none"})

    def body(self, request: VisionRequest, model: str) -> dict[str, Any]:
        """No `top_k` (OpenAI refuses it); a regex request is the caller's bug: `constraints()` has none."""
        if request.regex is not None:
            raise ValueError("the openai dialect has no regex constraint; check constraints() first")
        body: dict[str, Any] = {
            "model": model, "messages": [user_message(request)],
            "temperature": request.temperature, "top_p": request.top_p,
            "max_completion_tokens": request.max_tokens, "stream": False, **logprob_params(request),
        }
        if request.json_schema is not None:
            body["response_format"] = json_schema_format(request.json_schema)
        return body


SGLANG = SGLangDialect()
VLLM = VLLMDialect()
OPENAI = OpenAIDialect()
