"""LlavaGuard's answer exactly as it was trained to write it, as a regular expression for constrained decoding.

The model was fine-tuned on 4-space-indented JSON with the fields in the order rating, category, rationale.
A JSON schema lets the grammar engine choose its own whitespace and key order, which moves the model off the
layout it knows; a regular expression of the layout does not (SGLang `regex`, vLLM `guided_regex`). The rationale
is any JSON string body without raw control characters (escapes allowed, `\\uXXXX` included).

The pattern must compile in every engine a server may use (Python `re`, outlines, xgrammar's JavaScript-style
converter), so it keeps to their common subset: plain groups (older xgrammar refuses `(?:`), no lookarounds, no
backreferences, no `{n}` counts, and no escapes of characters that are not special (`\\ `, `\\-`).
"""

from __future__ import annotations

import json

from worker.categories import CATEGORIES, RATINGS

INDENT = " " * 4
_HEX = "[0-9a-fA-F]"
RATIONALE_PATTERN = r'([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u' + _HEX * 4 + ")*"
_SPECIAL = frozenset(".^$*+?()[]{}|\\/")


def _literal(value: str) -> str:
    """`value` matched literally, escaping only the characters every engine treats as special."""
    return "".join("\\" + char if char in _SPECIAL else char for char in value)


def _alternatives(values: tuple[str, ...]) -> str:
    return "(" + "|".join(_literal(value) for value in values) + ")"


OUTPUT_REGEX = (
    r"\{\n"
    + INDENT + r'"rating": "' + _alternatives(RATINGS) + r'",\n'
    + INDENT + r'"category": "' + _alternatives(CATEGORIES) + r'",\n'
    + INDENT + r'"rationale": "' + RATIONALE_PATTERN + r'"\n'
    + r"\}"
)
"""The training layout; `re.fullmatch(OUTPUT_REGEX, text)` holds for every answer decoded under it."""


def training_layout(rating: str, category: str, rationale: str) -> str:
    """An answer in the training layout (what the model writes, and what the stand-in answers under `regex`)."""
    return json.dumps({"rating": rating, "category": category, "rationale": rationale}, indent=4, ensure_ascii=False)
