"""SGLang's JSON as the stand-in reads and writes it: request bodies in, responses and error bodies out.

Shapes follow sglang's `srt/entrypoints/openai/protocol.py` and `srt/managers/io_struct.py` for the fields a
client looks at; the stand-in ignores sampling values other than the token limit.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from worker.standin.verdicts import DEFAULT_ORDER

IMAGE_TOKENS = 1485
"""What one <=384 px image costs LlavaGuard-OV; the stand-in reports it as prompt tokens."""
EOS_TOKEN_ID = 151645  # Qwen2's <|im_end|>, what SGLang reports as `matched_stop`
QUEUE_FULL = "The request queue is full."


class BadRequest(ValueError):
    """The body is not a request the stand-in can serve: 400 in SGLang's shape."""


@dataclass(frozen=True)
class Job:
    prompt: str
    image_url: str
    max_tokens: int | None
    schema_order: tuple[str, ...] | None  # None: unconstrained decoding
    regex: str | None = None  # SGLang's `regex`: answer in the training layout (regex_answers.py)


@dataclass(frozen=True)
class Output:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"JSON decode error: {exc}") from exc


def finish(job: Job, text: str) -> Output:
    """Cut the answer at `max_tokens` (4 characters a token), as a real server runs out of tokens."""
    tokens = max(1, math.ceil(len(text) / 4))
    prompt_tokens = IMAGE_TOKENS + math.ceil(len(job.prompt) / 4)
    if job.max_tokens is not None and tokens > job.max_tokens:
        return Output(text[: job.max_tokens * 4], "length", prompt_tokens, job.max_tokens)
    return Output(text, "stop", prompt_tokens, tokens)


def openai_error(message: str, status: int = 400) -> dict[str, Any]:
    kind = "BadRequest" if status == 400 else "InternalServerError"
    return {"object": "error", "message": message, "type": kind, "param": None, "code": status}


def queue_full_error() -> dict[str, Any]:
    return {"object": "error", "message": QUEUE_FULL, "type": "503", "code": 503}


def native_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message}}


def chat_response(output: Output, model: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": output.text, "reasoning_content": None,
                            "tool_calls": None},
                "logprobs": None,
                "finish_reason": output.finish_reason,
                "matched_stop": EOS_TOKEN_ID if output.finish_reason == "stop" else None,
            }
        ],
        "usage": {
            "prompt_tokens": output.prompt_tokens,
            "completion_tokens": output.completion_tokens,
            "total_tokens": output.prompt_tokens + output.completion_tokens,
            "prompt_tokens_details": None,
        },
    }


def generate_item(output: Output, latency_s: float) -> dict[str, Any]:
    reason: dict[str, Any] = (
        {"type": "stop", "matched": EOS_TOKEN_ID}
        if output.finish_reason == "stop"
        else {"type": "length", "length": output.completion_tokens}
    )
    meta = {
        "id": uuid.uuid4().hex,
        "finish_reason": reason,
        "prompt_tokens": output.prompt_tokens,
        "completion_tokens": output.completion_tokens,
        "cached_tokens": 0,
        "e2e_latency": latency_s,
    }
    return {"text": output.text, "meta_info": meta}


def schema_order(schema: Any) -> tuple[str, ...]:
    """The order a grammar-constrained model writes an object in: the schema's property order."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(properties, dict) and properties:
        return tuple(str(key) for key in properties)
    return DEFAULT_ORDER
