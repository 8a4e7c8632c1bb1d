"""The stand-in's dialects: which chat-completions fields each server family accepts, and how it refuses.

    sglang  today's stand-in, unchanged: SGLang's fields, `{"object": "error", ...}` bodies, 503 queue full
    vllm    current vLLM (>= 0.12): `structured_outputs: {"regex"|"json": ...}`; the removed `guided_*` fields
            are accepted and ignored, as vLLM does (the constraint fails open, which a client must not rely on);
            `model` must be the served name (404 otherwise); `{"error": {...}}` bodies; 503 when busy
    openai  OpenAI's chat completions: any field OpenAI does not know (`top_k`, `regex`, `guided_*`,
            `structured_outputs`) is a 400 `Unrecognized request argument supplied`; 429 when busy

A dialect rewrites an accepted body into the SGLang fields the shared job reader understands (vLLM's
`structured_outputs.regex` becomes SGLang's `regex`), so a constraint honoured for one dialect is honoured
for all. Log-probabilities are asked for the same way everywhere (`logprobs`, `top_logprobs` <= 20).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from worker.standin.wire import QUEUE_FULL, openai_error, queue_full_error

DialectName = Literal["sglang", "vllm", "openai"]
DIALECTS: tuple[DialectName, ...] = ("sglang", "vllm", "openai")
MAX_TOP_LOGPROBS = 20
OPENAI_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "n", "stream", "stream_options", "stop", "max_tokens",
    "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "response_format", "seed", "user", "tools", "tool_choice", "parallel_tool_calls", "metadata", "store",
    "service_tier", "modalities", "prediction", "reasoning_effort",
})
VLLM_REMOVED = ("guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend")


class Refused(ValueError):
    """The body is not one this dialect's server accepts: answer `status` with the dialect's error body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LogprobRequest:
    top: int
    """Alternatives per token (0: the chosen token only)."""


@dataclass(frozen=True)
class Dialect:
    name: DialectName
    served_model: str

    def read(self, body: Any) -> tuple[Any, LogprobRequest | None]:
        """The body in SGLang's fields, and the log-probabilities it asks for; Refused if not accepted."""
        if not isinstance(body, dict):
            return body, None
        body = copy.copy(body)
        if self.name == "openai":
            unknown = sorted(set(body) - OPENAI_FIELDS)
            if unknown:
                raise Refused(f"Unrecognized request argument supplied: {unknown[0]}")
        elif self.name == "vllm":
            self._vllm(body)
        return body, _logprob_request(body)

    def error(self, message: str, status: int = 400) -> dict[str, Any]:
        if self.name == "sglang":
            return openai_error(message, status)
        kinds = {400: "BadRequestError", 404: "NotFoundError", 429: "requests", 503: "ServiceUnavailableError"}
        kind = kinds.get(status, "InternalServerError")
        if self.name == "openai":
            kind = "invalid_request_error" if status == 400 else kind
            return {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}

    def overloaded(self) -> tuple[int, dict[str, Any]]:
        """What the server answers when it cannot take the request now."""
        if self.name == "sglang":
            return 503, queue_full_error()
        if self.name == "openai":
            return 429, self.error("Rate limit reached for requests. Please try again shortly.", 429)
        return 503, self.error(QUEUE_FULL, 503)

    def _vllm(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model is not None and model != self.served_model:
            raise Refused(f"The model `{model}` does not exist.", 404)
        for removed in VLLM_REMOVED:  # vLLM >= 0.12 accepts unknown fields and ignores them
            body.pop(removed, None)
        body.pop("regex", None)  # SGLang's field, not vLLM's: ignored there too
        wanted = body.pop("structured_outputs", None)
        if wanted is None:
            return
        if not isinstance(wanted, dict):
            raise Refused("structured_outputs must be an object")
        kinds = [key for key in ("json", "regex", "choice", "grammar") if wanted.get(key) is not None]
        if len(kinds) != 1 or (kinds[0] == "json" and body.get("response_format") is not None):
            raise Refused("You can only use one kind of structured outputs constraint but multiple are specified")
        if kinds[0] == "regex":
            body["regex"] = wanted["regex"]
        elif kinds[0] == "json":
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "structured_outputs",
                                                                              "schema": wanted["json"]}}
        else:
            raise Refused(f"the stand-in does not serve structured_outputs.{kinds[0]}")


def _logprob_request(body: dict[str, Any]) -> LogprobRequest | None:
    wanted, top = body.get("logprobs"), body.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS):
        raise Refused(f"top_logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}")
    if top and wanted is not True:
        raise Refused("logprobs must be true when top_logprobs is set")
    return LogprobRequest(top or 0) if wanted is True else None
