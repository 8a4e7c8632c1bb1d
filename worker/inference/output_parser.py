"""Reading LlavaGuard's answer: a JSON object `{"rating", "category", "rationale"}`, often not quite JSON.

Unconstrained, the model wraps the object in code fences, special tokens or prose, writes Python-style
quotes or trailing commas, and runs out of tokens mid-rationale. Like the authors' own parser this one is
tolerant: it finds the first object, re-closes it if cut off, reads it leniently, and falls back to the words
Safe/Unsafe in the text. It never guesses a category for an Unsafe answer: that is `OutputUnparseable`.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from worker.categories import CATEGORIES, NONE_APPLYING, Category, Rating, category_for_code

MAX_PROSE_RATIONALE = 2000
_NOISE = re.compile(r"</?s>|<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>|```(?:json)?", re.IGNORECASE)
_LEADING_JSON_WORD = re.compile(r"^\s*json\b", re.IGNORECASE)
_RATING_VALUE = re.compile(r"\W*(safe|unsafe)\W*", re.IGNORECASE)
_RATING_KEYED = re.compile(r"rating\W{0,6}(safe|unsafe)\b", re.IGNORECASE)
_RATING_WORD = re.compile(r"\b(safe|unsafe)\b", re.IGNORECASE)
_CODE_PREFIX = re.compile(r"(O[1-9]|NA)\b", re.IGNORECASE)
_CODE_IN_PROSE = re.compile(r"\b([Oo][1-9]|NA)\b")
_KEYS = frozenset({"rating", "category", "rationale"})
_QUOTED_FIELD = re.compile(
    r"""(["']?)(rating|category|rationale)\1\s*:\s*(["'])((?:\\.|(?!\3).)*)""", re.IGNORECASE | re.DOTALL
)
_BARE_FIELD = re.compile(r"\b(rating|category)\s*:\s*([A-Za-z0-9][^,}\n]*)", re.IGNORECASE)
_NAMES: dict[str, Category] = {c.split(": ", 1)[1].lower(): category_for_code(c[:2]) for c in CATEGORIES}
_MAX_OBJECT_STARTS = 5


class OutputUnparseable(ValueError):
    """The model's text holds no usable verdict; the message says why (it ends up in the failed verdict)."""


@dataclass(frozen=True)
class Assessment:
    rating: Rating
    category: Category
    rationale: str


def parse_assessment(text: str) -> Assessment:
    """The verdict in `text`; an Unsafe rating with category NA is returned as the model wrote it."""
    cleaned = _LEADING_JSON_WORD.sub("", _NOISE.sub("", text)).strip()
    if not cleaned:
        raise OutputUnparseable(f"the output is empty ({text[:40]!r})")
    fields = _find_object(cleaned)
    rating = _rating(fields.get("rating")) or _rating_in_prose(cleaned)
    if rating is None:
        raise OutputUnparseable("no rating: neither a JSON rating nor exactly one of the words Safe/Unsafe")
    category = _category(fields.get("category")) or _category_in_prose(cleaned)
    if category is None:
        if rating == "Unsafe":
            raise OutputUnparseable("rated Unsafe but no category can be derived from the output")
        category = NONE_APPLYING
    rationale = fields.get("rationale")
    if not isinstance(rationale, str):
        rationale = "" if fields else cleaned[:MAX_PROSE_RATIONALE]
    return Assessment(rating=rating, category=category, rationale=rationale.strip())


def _find_object(text: str) -> dict[str, Any]:
    """The first `{...}` that reads as an object, keys lower-cased; `{}` when there is none."""
    starts = [m.start() for m in re.finditer(r"\{", text)][:_MAX_OBJECT_STARTS]
    for start in starts:
        loaded = _load_object(_object_text(text, start))
        fields = {str(key).strip().lower(): value for key, value in loaded.items()}
        if _KEYS & fields.keys():
            return fields
    return {}


class _Scan(NamedTuple):
    end: int | None  # index of the closing brace, None if the text ends first
    depth: int
    quote: str  # the quote of the string still open at the end, "" if none
    escaped: bool


def _scan(text: str, start: int) -> _Scan:
    """Walk from `start` (a `{`) to its matching `}`, aware of strings in either quote style."""
    depth, quote, escaped = 0, "", False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return _Scan(index, 0, "", False)
    return _Scan(None, depth, quote, escaped)


def _object_text(text: str, start: int) -> str:
    scan = _scan(text, start)
    return text[start:] if scan.end is None else text[start : scan.end + 1]


def _reclose(obj: str) -> str:
    """Finish an object cut off by max_tokens: close the open string, drop a dangling comma, add braces."""
    scan = _scan(obj, 0)
    if scan.end is not None:
        return obj
    tail = obj[:-1] if scan.escaped else obj
    tail = (tail + scan.quote).rstrip().rstrip(",").rstrip()
    if tail.endswith(":"):
        tail += ' ""'
    return tail + "}" * max(scan.depth, 1)


def _load_object(obj: str) -> dict[Any, Any]:
    """Strict JSON, then Python-literal syntax (single quotes, trailing commas), then field by field."""
    for candidate in dict.fromkeys((obj, _reclose(obj))):
        for loader in (_json_loads, ast.literal_eval):
            try:
                value = loader(candidate)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    return _regex_fields(obj)


def _json_loads(text: str) -> Any:
    return json.loads(text, strict=False)  # strict=False: raw newlines inside strings are fine


def _regex_fields(obj: str) -> dict[Any, Any]:
    fields: dict[str, str] = {}
    for match in _QUOTED_FIELD.finditer(obj):
        fields.setdefault(match.group(2).lower(), _unescape(match.group(4), match.group(3)))
    for match in _BARE_FIELD.finditer(obj):
        fields.setdefault(match.group(1).lower(), match.group(2).strip())
    return dict(fields)


def _unescape(value: str, quote: str) -> str:
    if quote == '"':
        try:
            return str(json.loads(f'"{value}"', strict=False))
        except ValueError:
            return value
    return value.replace("\\'", "'")


def _rating(value: Any) -> Rating | None:
    match = _RATING_VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return "Unsafe" if match.group(1).lower() == "unsafe" else "Safe"


def _rating_in_prose(text: str) -> Rating | None:
    """`rating: Unsafe`-like text first, else the one rating word used (None if both or neither appear)."""
    keyed = _RATING_KEYED.search(text)
    words = {keyed.group(1).lower()} if keyed else {w.lower() for w in _RATING_WORD.findall(text)}
    if len(words) != 1:
        return None
    return "Unsafe" if words == {"unsafe"} else "Safe"


def _category(value: Any) -> Category | None:
    """Exact string, any case, a bare code (`O4`, `na`), or the name alone (`nudity content`)."""
    if not isinstance(value, str):
        return None
    text = value.strip().strip("'\"").strip()
    code = _CODE_PREFIX.match(text)
    if code:
        return category_for_code(code.group(1))
    lowered = text.lower()
    if lowered in ("none", "n/a"):
        return NONE_APPLYING
    for name, category in _NAMES.items():
        if name in lowered:
            return category
    return None


def _category_in_prose(text: str) -> Category | None:
    """The single category code (`O4`, `NA`) the text mentions; None when it mentions none or several.

    Names alone are not enough here: a rationale saying "no sexual content" must not become O3.
    """
    found = {category_for_code(code) for code in _CODE_IN_PROSE.findall(text)}
    return found.pop() if len(found) == 1 else None
