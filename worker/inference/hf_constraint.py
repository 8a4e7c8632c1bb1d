"""Constrained decoding for the in-process backend: lm-format-enforcer behind a per-row logits processor.

lm-format-enforcer walks a character-level parser (a regular expression or a JSON schema) over the token
vocabulary and says which tokens may come next. Its own transformers integration constrains every row of a
batch the same way; here each row has its own enforcer (or none), because one batch mixes requests with
different constraints. Rows that have finished (an end token was generated) are left alone: their later
tokens are padding and never read. The tokenizer's vocabulary table is built once per model, and so is
each pattern's parser.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lmformatenforcer import (
    CharacterLevelParser,
    JsonSchemaParser,
    RegexParser,
    TokenEnforcer,
    TokenEnforcerTokenizerData,
)
from transformers import LogitsProcessor


def tokenizer_data(tokenizer: Any, eos_token_ids: Sequence[int]) -> TokenEnforcerTokenizerData:
    """The vocabulary as lm-format-enforcer needs it: (id, text, starts a word) for every regular token."""
    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    regular = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        # Decoding after "0" and dropping it shows a leading space that decoding alone would strip.
        after_zero = tokenizer.decode([zero, token_id])[1:]
        alone = tokenizer.decode([token_id])
        regular.append((token_id, after_zero, len(after_zero) > len(alone)))

    def decode(tokens: list[int]) -> str:
        return str(tokenizer.decode(tokens)).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, list(eos_token_ids), False, len(tokenizer))


class Parsers:
    """Parsers per pattern for one model. Built once each (compiling the training-layout regex takes
    seconds) and kept per model, not per process: a TokenEnforcer sets its tokenizer's alphabet on the parser
    it is given, so two models must not share one."""

    def __init__(self) -> None:
        self._parsers: dict[tuple[str, str], CharacterLevelParser] = {}
        self._lock = threading.Lock()

    def regex(self, pattern: str) -> CharacterLevelParser:
        return self._get("regex", pattern)

    def schema(self, schema: Mapping[str, Any]) -> CharacterLevelParser:
        return self._get("json_schema", json.dumps(schema, sort_keys=True))

    def _get(self, kind: str, source: str) -> CharacterLevelParser:
        with self._lock:
            parser = self._parsers.get((kind, source))
            if parser is None:
                parser = RegexParser(source) if kind == "regex" else JsonSchemaParser(json.loads(source))
                self._parsers[(kind, source)] = parser
            return parser


class RowConstraints(LogitsProcessor):
    """Masks, row by row, every token its enforcer forbids; rows without an enforcer pass unchanged."""

    def __init__(
        self, enforcers: Sequence[TokenEnforcer | None], prompt_length: int, eos_token_ids: Sequence[int]
    ) -> None:
        self._enforcers = list(enforcers)
        self._prompt_length = prompt_length
        self._eos = set(eos_token_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, enforcer in enumerate(self._enforcers):
            if enforcer is None:
                continue
            sequence = input_ids[row].tolist()
            if self._eos.intersection(sequence[self._prompt_length :]):
                continue
            allowed = list(enforcer.get_allowed_tokens(sequence).allowed_tokens) or sorted(self._eos)
            mask = torch.full_like(scores[row], float("-inf"))
            mask[torch.tensor(allowed, dtype=torch.long, device=scores.device)] = 0.0
            scores[row] = scores[row] + mask
        return scores
