"""The JSON of SGLang's OpenAI-compatible API: request bodies out, completions and error messages in.

Pure functions, no I/O, so the wire format is testable without a server. Nothing here knows what the prompt
means or what the model is expected to answer; that is `llavaguard.py`'s job.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from worker.http_headers import parse_retry_after
from worker.inference.base import Completion, VisionRequest
from worker.inference.logprob_wire import logprob_params, parse_logprobs

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
MODEL_INFO_PATH = "/model_info"
HEALTH_PATH = "/health"
SCHEMA_NAME = "llavaguard_assessment"


class MalformedResponse(ValueError):
    """The server answered 2xx with a body that is not the documented shape."""


def data_uri(image: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def chat_body(request: VisionRequest, model: str = "default") -> dict[str, Any]:
    """One user message, image part first: the order LlavaGuard was trained on (no literal `<image>`)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_uri(request.image, request.mime)}},
                    {"type": "text", "text": request.prompt},
                ],
            }
        ],
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "max_tokens": request.max_tokens,
        "stream": False,
        **logprob_params(request),
    }
    if request.regex is not None:  # SGLang's own field; it takes one of regex / json_schema / ebnf, never two
        body["regex"] = request.regex
    elif request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": dict(request.json_schema), "strict": True},
        }
    return body


def parse_completion(payload: Any) -> Completion:
    """Read `choices[0]` and `usage`; MalformedResponse if the text is missing."""
    try:
        choice = payload["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise MalformedResponse(f"no choices[0].message.content in the response ({exc!r})") from exc
    if not isinstance(text, str):
        raise MalformedResponse(f"choices[0].message.content is {type(text).__name__}, not a string")
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    return Completion(
        text=text,
        finish_reason=reason if isinstance(reason, str) else None,
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        logprobs=parse_logprobs(choice.get("logprobs")) if isinstance(choice, dict) else None,
    )


def parse_model_id(payload: Any) -> str | None:
    """`GET /v1/models` -> `data[0].id`, or None when the list is absent or empty."""
    try:
        model_id = payload["data"][0]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return model_id if isinstance(model_id, str) and model_id else None


def parse_model_info(payload: Any) -> str | None:
    """`GET /model_info` -> `served_model_name`, else `model_path` (older servers only have the path)."""
    if not isinstance(payload, dict):
        return None
    for key in ("served_model_name", "model_path"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def error_message(payload: Any, fallback: str) -> str:
    """The human message of an error body in any of the shapes servers use.

    SGLang `/v1/*`: `{"object": "error", "message": ...}`; SGLang `/generate` and OpenAI/vLLM:
    `{"error": {"message": ...}}`; FastAPI validation: `{"detail": ...}`.
    """
    if isinstance(payload, dict):
        for candidate in (payload.get("message"), payload.get("error"), payload.get("detail")):
            if isinstance(candidate, dict) and isinstance(candidate.get("message"), str):
                return str(candidate["message"])
            if isinstance(candidate, str) and candidate:
                return candidate
    return fallback.strip()[:500] or "(empty body)"


def retry_after_s(header: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds; None if absent or unreadable (worker/http_headers.py, shared with webhooks)."""
    return parse_retry_after(header, now=now)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
