"""How deep and how wide a JSON document is, read from its raw bytes before any parser builds an object.

`json.loads` recurses once per nesting level (100,000 levels end in a RecursionError) and builds every
element of a 650k-item array before a validator can count them. These checks answer both questions first,
from the document's *structure*: its brackets and commas outside string literals (`{}` spelled `[]`).

They must never cost per byte or per element in Python: every pass over the bytes is a C-level bytes or
regex operation (a hostile body is as large as the body limit allows and as bracket-heavy as it likes);
Python loops run once per chunk, per nesting level, or per counted element up to the limit. They judge
only depth and width: anything else wrong with a document is left to the parser.
"""

from __future__ import annotations

import functools
import re

_STRUCTURAL = b"[]{},"
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in _STRUCTURAL)
_UNIFY = bytes.maketrans(b"{}", b"[]")


class Structure:
    """The structure of a document fed in chunks (strings may span chunks; so may a run of backslashes)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._in_string = False
        self._escape = b""

    def feed(self, chunk: bytes) -> None:
        data = self._escape + chunk
        kept = data.rstrip(b"\\")
        # An odd run of backslashes at the end escapes the next chunk's first byte.
        self._escape = b"\\" if (len(data) - len(kept)) % 2 else b""
        # Inside strings, `\\` pairs from the left and then `\"` are the only escapes that matter.
        pieces = kept.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')
        outside = pieces[1::2] if self._in_string else pieces[0::2]
        self._in_string ^= (len(pieces) - 1) % 2 == 1
        self._parts.append(b"".join(outside).translate(_UNIFY, _NOT_STRUCTURAL))

    def value(self) -> bytes:
        return b"".join(self._parts)


def structure_of(raw: bytes) -> bytes:
    found = Structure()
    found.feed(raw)
    return found.value()


def too_deep(structure: bytes, max_depth: int) -> bool:
    """True if any bracket nests more than `max_depth` levels deep (an unclosed run counts as nested)."""
    brackets = structure.replace(b",", b"")
    if brackets.count(b"[") <= max_depth:
        return False
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")  # each pass removes exactly the innermost level
    return b"[]" in brackets or brackets.count(b"[") > max_depth


@functools.lru_cache(maxsize=4)
def _piece(levels: int) -> re.Pattern[bytes]:
    """A comma, or a container nested at most `levels` deep matched whole in C (possessive: no backtracking)."""
    inner = rb",*+"
    for _ in range(levels - 1):
        inner = rb"(?:,++|\[" + inner + rb"\])*+"
    return re.compile(rb",|\[" + inner + rb"\]")


def widest_near_top(structure: bytes, limit: int, max_depth: int) -> int:
    """Elements of the widest container at depth 1 or 2 (where a batch's `items` is), counted up to `limit` + 1.

    Containers below depth 2 are skipped whole, so this costs one step per element of the containers it
    counts, at most `limit` + 1 each. Call it only on a structure `too_deep` accepted.
    """
    if not structure.startswith(b"["):
        return 0
    piece = _piece(max_depth)
    widest, commas, pos = 0, 0, 1
    while commas < limit and widest <= limit:
        byte = structure[pos : pos + 1]
        if byte == b",":
            commas, pos = commas + 1, pos + 1
        elif byte == b"[":
            elements, pos = _width(structure, pos + 1, limit, piece)
            widest = max(widest, elements)
        else:
            break  # the top container ends (or the document is malformed: the parser will say so)
    return max(widest, commas + 1)


def _width(structure: bytes, pos: int, limit: int, piece: re.Pattern[bytes]) -> tuple[int, int]:
    """Elements of the container whose content starts at `pos` (commas + 1), and the position past its end."""
    commas = 0
    while commas < limit and (found := piece.match(structure, pos)) is not None:
        commas += found.end() - pos == 1
        pos = found.end()
    return commas + 1, pos + 1 if structure[pos : pos + 1] == b"]" else pos
