"""The stand-in's token log-probabilities: deterministic per image, in SGLang's and OpenAI's response shapes.

How sure the stand-in is of its rating comes from the image's colour, like the rating itself: 0.99 for a mean
colour within 5 RGB units of a palette colour, 0.05 less per further whole 5 units of distance from it, never
below 0.51 (the rating stays the more likely one). Whole steps, so JPEG re-encoding and downscaling (which
move a mean by a unit or two) do not move a score. So `make_image(code)` scores 0.99 (Unsafe) or 0.01
(Safe), and a test can place a score anywhere by moving the colour off the palette.

The answer is cut into word-ish tokens, with `Unsafe` split into `Un` + `safe` as BPE tokenizers do, so
clients must find the deciding token, not the first.

The category is as sure as the rating, and decided where the codes differ: `O4: ...` is written `O`, `4`, ...,
so at the digit the chosen digit has the rating's probability and the next code's digit (`5`; `1` after `9`)
the rest (`O` itself is certain). `NA: None applying` is decided at its first token, `NA`, whose alternative
`O` begins nine codes at once (a client cannot tell which). So `make_image("O4")` has category alternatives
O4 0.99 and O5 0.01.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any

from PIL import Image, ImageStat

from worker.standin.palette import PALETTE, nearest_code

SURE = 0.99
FLOOR = 0.51
STEP_UNITS = 5.0
PER_STEP = 0.05
CERTAIN = -1e-4
"""Log-probability of a token that decides nothing (every token but the rating's first)."""
FILLERS = ("#", "$", "%", "&", "*", "+", "<", "=", ">", "@", "^", "_", "|", "~", "`", ";", "?", "!", "/", "\\", "[")
"""Alternatives that begin no rating, to fill `top_logprobs` up to the number asked for."""
_TOKEN = re.compile(r" ?[A-Za-z]+| ?\d+|\s+|[^\sA-Za-z\d]")
_RATING_VALUE = re.compile(r'"rating":\s*"')
_CATEGORY_VALUE = re.compile(r'"category":\s*"')
_SPLIT = {"Unsafe": ("Un", "safe")}
_OTHER = {"Safe": "Un", "Unsafe": "Safe"}
"""The other rating's first token, the alternative at the deciding position."""


def rating_probability(image: Image.Image) -> float:
    """How sure the stand-in is of the rating it gives this image (see the module docstring)."""
    stat = ImageStat.Stat(image).mean[:3]
    mean = (stat[0], stat[1], stat[2])
    distance = math.dist(PALETTE[nearest_code(mean)], mean)
    return max(FLOOR, round(SURE - PER_STEP * math.floor(distance / STEP_UNITS), 4))


def tokenize(text: str) -> list[str]:
    """Word-ish tokens whose concatenation is `text`; `Unsafe` comes out as `Un` + `safe`."""
    tokens: list[str] = []
    for piece in _TOKEN.findall(text):
        tokens.extend(_SPLIT.get(piece, (piece,)))
    return tokens


def positions(text: str, probability: float, top: int) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """(token, logprob, top alternatives) per token; the rating's first token carries the decision."""
    tokens = tokenize(text)
    deciding = _deciding_index(text, tokens)
    category = _category_index(text, tokens)
    out = []
    for index, token in enumerate(tokens):
        if index == deciding:
            rating = "Safe" if token.startswith("S") else "Unsafe"
            chosen = math.log(probability)
            alternatives = [(token, chosen), (_OTHER[rating], math.log(1.0 - probability))]
        elif index == category and (other := _other_code_token(token)) is not None:
            chosen = math.log(probability)
            alternatives = [(token, chosen), (other, math.log(1.0 - probability))]
        else:
            chosen = CERTAIN
            alternatives = [(token, CERTAIN)]
        fillers = [filler for filler in FILLERS if filler not in dict(alternatives)]
        alternatives += [(filler, -30.0 - i) for i, filler in enumerate(fillers)]
        out.append((token, chosen, alternatives[:top]))
    return out


def chat_logprobs(text: str, probability: float, top: int) -> dict[str, Any]:
    """`choices[0].logprobs` as OpenAI, vLLM and SGLang write it."""
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [
        {**entry(token, logprob), "top_logprobs": [entry(t, lp) for t, lp in alternatives]}
        for token, logprob, alternatives in positions(text, probability, top)
    ], "refusal": None}


def native_logprobs(text: str, probability: float, top: int, with_text: bool) -> dict[str, Any]:
    """`meta_info` fields of SGLang's `/generate`: `[logprob, token_id, text-or-None]` triples."""
    def triple(token: str, logprob: float) -> list[Any]:
        return [logprob, zlib.crc32(token.encode("utf-8")) % 150_000, token if with_text else None]

    rows = positions(text, probability, top)
    meta: dict[str, Any] = {"output_token_logprobs": [triple(token, logprob) for token, logprob, _ in rows]}
    if top > 0:
        meta["output_top_logprobs"] = [[triple(t, lp) for t, lp in alternatives] for _, _, alternatives in rows]
    return meta


def _deciding_index(text: str, tokens: list[str]) -> int | None:
    match = _RATING_VALUE.search(text)
    if match is None:
        return None
    start = 0
    for index, token in enumerate(tokens):
        if start == match.end():
            return index if token in _OTHER.values() else None
        start += len(token)
    return None


def _category_index(text: str, tokens: list[str]) -> int | None:
    """The token deciding the category: `NA`, or the digit after `O` (see the module docstring)."""
    match = _CATEGORY_VALUE.search(text)
    if match is None:
        return None
    start = 0
    for index, piece in enumerate(tokens):
        if start == match.end():
            return index + 1 if piece == "O" else index
        start += len(piece)
    return None


def _other_code_token(piece: str) -> str | None:
    """The alternative at the category's deciding token: the next code's digit, or `O` against `NA`."""
    if piece == "NA":
        return "O"
    if piece.isdigit() and len(piece) == 1 and piece != "0":
        return str(int(piece) % 9 + 1)
    return None
