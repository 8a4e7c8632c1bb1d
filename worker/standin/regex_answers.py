"""The stand-in under SGLang's `regex` constraint: it answers in the training layout and checks its own answer.

A real server makes any text it generates match the regex; the stand-in cannot generate to an arbitrary
pattern, so it writes the one layout LlavaGuard was trained on and refuses (400, SGLang's grammar error) a
pattern that layout does not fully match. `--no-regex` answers like a build whose grammar backend has no regex
support, so the worker's fallback to the JSON schema can be exercised.
"""

from __future__ import annotations

import re
from typing import Any

from worker.inference.training_format import training_layout
from worker.standin.verdicts import Answer
from worker.standin.wire import BadRequest


class RegexRefused(ValueError):
    """SGLang refuses the grammar: 400 `Invalid grammar request: ...` in the endpoint's error shape."""


def read_regex(value: Any, *, other_constraint: bool) -> str | None:
    """The request's `regex` (None when absent); a BadRequest if it is not a string or comes with a schema."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("regex must be a string")
    if other_constraint:
        raise BadRequest("Only one of regex, json_schema, or ebnf can be set in a request")
    return value


def regex_answer(answer: Answer, pattern: str, *, supported: bool = True) -> str:
    """The answer in the training layout, provided it fully matches `pattern`."""
    key = f"key=('regex', {pattern[:120]!r})"
    if not supported:
        raise RegexRefused(f"Invalid grammar request: {key}: the grammar backend does not support regex")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise RegexRefused(f"Invalid grammar request: {key}: {exc}") from exc
    text = training_layout(answer.rating, answer.category, answer.rationale)
    if compiled.fullmatch(text) is None:
        raise RegexRefused(f"Invalid grammar request: {key}: the stand-in's answer in the training layout "
                           "does not match this regex")
    return text
