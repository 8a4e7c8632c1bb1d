"""`rating_score`: the model's probability that the image is Unsafe, read from the rating token's alternatives.

Where: the answer's text is the concatenation of its tokens, so character offsets come from the token texts;
the rating value starts after the first `"rating": "` (anywhere in the answer: free text may put other fields
or prose first). Which token: the first one holding a character where the ratings differ (`Safe`/`Unsafe`
differ at their first character), whether the tokenizer writes `Unsafe` whole or as `Un` + `safe`, and even
when that token also carries the opening quote. Each alternative at that position is mapped to the rating it
begins (`Un` -> Unsafe, `S` -> Safe); alternatives consistent with neither (junk, another field) are dropped,
and the score is P(Unsafe) normalised over the ones that remain. With constrained decoding those are exactly
the two ratings.

Never invented: when there is nothing to read, the score is None and `source` says why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from worker.categories import RATINGS
from worker.inference.base import TokenLogprob

UNSAFE = "Unsafe"
_RATING_KEY = re.compile(r"""["']rating["']\s*:\s*["']""")
_SHARED = next(i for i, chars in enumerate(zip(*RATINGS, strict=False)) if len(set(chars)) > 1)
"""Characters every rating shares; the rating is decided at the first character after them."""


@dataclass(frozen=True)
class RatingScore:
    score: float | None
    """P(Unsafe) in [0, 1], or None."""
    source: str
    """`logprobs` when there is a score; else why not: `not_requested`, `backend_returned_none`,
    `rating_not_found` (no rating in the answer), `rating_token_unmatched` (no alternative at the deciding
    token begins a rating)."""


def rating_score(logprobs: Sequence[TokenLogprob] | None, *, requested: bool = True) -> RatingScore:
    """The score of one completion's token log-probabilities."""
    if not requested:
        return RatingScore(None, "not_requested")
    if not logprobs:
        return RatingScore(None, "backend_returned_none")
    found = _deciding_position(logprobs)
    if found is None:
        return RatingScore(None, "rating_not_found")
    position, before = found
    mass = _mass_per_rating(position, before)
    total = sum(mass.values())
    if total <= 0.0:
        return RatingScore(None, "rating_token_unmatched")
    return RatingScore(mass.get(UNSAFE, 0.0) / total, "logprobs")


def _deciding_position(logprobs: Sequence[TokenLogprob]) -> tuple[TokenLogprob, str] | None:
    """The token holding the rating's first differing character, and the token's text before that character."""
    text = "".join(position.token for position in logprobs)
    match = _RATING_KEY.search(text)
    if match is None:
        return None
    decided_at = match.end() + _SHARED
    start = 0
    for position in logprobs:
        end = start + len(position.token)
        if start <= decided_at < end:
            return position, position.token[: decided_at - start]
        start = end
    return None  # the answer stops before the rating does


def _mass_per_rating(position: TokenLogprob, before: str) -> dict[str, float]:
    """Probability per rating over the distinct alternatives (the chosen token counts if it is not listed)."""
    alternatives = dict(position.top)
    alternatives.setdefault(position.token, position.logprob)
    mass: dict[str, float] = {}
    for token, logprob in alternatives.items():
        rating = _rating_begun_by(token, before)
        if rating is not None:
            mass[rating] = mass.get(rating, 0.0) + math.exp(logprob)
    return mass


def _rating_begun_by(token: str, before: str) -> str | None:
    """The one rating this alternative writes at the deciding position, or None (another text, or ambiguous)."""
    if not token.startswith(before) or len(token) == len(before):
        return None
    written = token[len(before):]
    matches = [r for r in RATINGS if r[_SHARED:].startswith(written) or written.startswith(r[_SHARED:])]
    return matches[0] if len(matches) == 1 else None
