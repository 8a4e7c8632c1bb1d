"""Token log-probabilities on the OpenAI chat-completions wire, shared by every OpenAI-compatible dialect.

Request: `"logprobs": true, "top_logprobs": N` (OpenAI, vLLM and SGLang agree; N <= 20). Answer:
`choices[0].logprobs.content` = one `{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
"bytes"}, ...]}` per generated token. Pure functions, no I/O. Log-probabilities are an extra, never a reason
to fail a moderation: a missing or malformed `logprobs` reads as None (the score then says why it is absent).
"""

from __future__ import annotations

import math
from typing import Any

from worker.inference.base import TokenLogprob, VisionRequest

MAX_TOP_LOGPROBS = 20
"""OpenAI's limit (and vLLM's default `--max-logprobs`): asking for more is a 400."""


def logprob_params(request: VisionRequest) -> dict[str, Any]:
    """The request fields for `request.top_logprobs` alternatives per token; nothing when it asks for none."""
    if request.top_logprobs <= 0:
        return {}
    return {"logprobs": True, "top_logprobs": min(request.top_logprobs, MAX_TOP_LOGPROBS)}


def parse_logprobs(value: Any) -> tuple[TokenLogprob, ...] | None:
    """`choices[0].logprobs` -> one TokenLogprob per generated token, or None when absent or malformed."""
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, list) or not content:
        return None
    positions = [_position(entry) for entry in content]
    if any(position is None for position in positions):
        return None
    return tuple(position for position in positions if position is not None)


def _position(entry: Any) -> TokenLogprob | None:
    chosen = _alternative(entry)
    if chosen is None:
        return None
    raw_top = entry.get("top_logprobs") or []
    if not isinstance(raw_top, list):
        return None
    top = [_alternative(alternative) for alternative in raw_top]
    return TokenLogprob(chosen[0], chosen[1], tuple(pair for pair in top if pair is not None))


def _alternative(entry: Any) -> tuple[str, float] | None:
    """(text, logprob) of one `{"token", "logprob", "bytes"}`; the bytes win when a token is part of a character."""
    if not isinstance(entry, dict):
        return None
    token, logprob = entry.get("token"), entry.get("logprob")
    if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, int | float):
        return None
    if math.isnan(logprob):
        return None
    logprob = min(float(logprob), 0.0)  # a probability above 1 is rounding; vLLM writes -inf as -9999.0
    raw = entry.get("bytes")
    if isinstance(raw, list) and raw and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        token = bytes(raw).decode("utf-8", errors="replace")
    return token, logprob
