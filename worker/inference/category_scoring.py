"""`category_scores`: how likely each category was, read from the category value's token alternatives.

Where: the category value starts after the first `"category": "` of the answer (like the rating, anywhere in
it). The categories share no common start (`O1: ...` .. `O9: ...`, `NA: None applying`), so the decision is a
walk down the tokens of the value: at each token the alternatives are normalised over those that are still
consistent with some category (junk and other text dropped), an alternative that begins exactly one category
gives it (the path's probability so far x its own), and the walk follows the chosen token while it still
leaves several categories open (`O` before the digit). An alternative that begins several categories at once
(`O` against a chosen `NA`) cannot be split between them and is dropped. The result is normalised to sum to 1
over the categories found; it holds the chosen category at least.

Never invented: None when there are no log-probabilities or the answer has no category to read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from worker.categories import CATEGORIES
from worker.inference.base import TokenLogprob

_CATEGORY_KEY = re.compile(r"""["']category["']\s*:\s*["']""")


def category_scores(logprobs: Sequence[TokenLogprob] | None) -> dict[str, float] | None:
    """Full category string -> probability, summing to 1; None when there is nothing to read."""
    if not logprobs:
        return None
    found = _value_start(logprobs)
    if found is None:
        return None
    index, before = found
    mass: dict[str, float] = {}
    written, path = "", 1.0
    for position in logprobs[index:]:
        shares = _shares(position, before, written)
        for text, share in shares.items():
            open_ = _open(written + text)
            if len(open_) == 1:
                mass[open_[0]] = mass.get(open_[0], 0.0) + path * share
        chosen = position.token[len(before):]
        if chosen not in shares or len(_open(written + chosen)) == 1:
            break  # decided (or the chosen text is no category: nothing further to read)
        written, path, before = written + chosen, path * shares[chosen], ""
    total = sum(mass.values())
    return {c: p / total for c, p in sorted(mass.items(), key=lambda kv: -kv[1])} if total > 0 else None


def _value_start(logprobs: Sequence[TokenLogprob]) -> tuple[int, str] | None:
    """The index of the token holding the value's first character, and that token's text before it."""
    text = "".join(position.token for position in logprobs)
    match = _CATEGORY_KEY.search(text)
    if match is None:
        return None
    start = 0
    for index, position in enumerate(logprobs):
        end = start + len(position.token)
        if start <= match.end() < end:
            return index, position.token[: match.end() - start]
        start = end
    return None  # the answer stops before the category does


def _shares(position: TokenLogprob, before: str, written: str) -> dict[str, float]:
    """The text each alternative adds to the value -> its probability, normalised over those still consistent."""
    alternatives = dict(position.top)
    alternatives.setdefault(position.token, position.logprob)
    kept: dict[str, float] = {}
    for token, logprob in alternatives.items():
        if token.startswith(before) and len(token) > len(before) and _open(written + token[len(before):]):
            text = token[len(before):]
            kept[text] = kept.get(text, 0.0) + math.exp(logprob)
    total = sum(kept.values())
    return {text: p / total for text, p in kept.items()} if total > 0 else {}


def _open(prefix: str) -> list[str]:
    """The categories a value beginning with `prefix` may still be (a token may run past the value's end)."""
    return [c for c in CATEGORIES if c.startswith(prefix) or prefix.startswith(c)]
