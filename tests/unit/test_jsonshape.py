"""The raw-bytes JSON structure scan agrees with the parser on depth and width, however the bytes are chunked."""

from __future__ import annotations

import json

import pytest

from producers.api.jsonshape import Structure, structure_of, too_deep, widest_near_top

TRICKY_STRINGS = ["[[[{{{", '"[[', "\\", '\\"', "]]]}}}", 'a\\"[b', "[\\[\\\\", "\u005b"]
"""Values with brackets, quotes and backslashes: JSON escapes them, and none of their brackets may count."""


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def documents() -> list[bytes]:
    strings = list(TRICKY_STRINGS)
    docs: list[object] = [{"a": strings}, [strings, {"k": [[[]]]}], {"items": [{"x": s} for s in strings]}]
    for levels in (1, 5, 31, 32, 33, 40):
        inner: object = strings
        for n in range(levels - 1):
            inner = {"a": inner} if n % 2 else [inner]
        docs.append(inner)
    return [json.dumps(doc).encode() for doc in docs] + [json.dumps(doc, indent=2).encode() for doc in docs]


@pytest.mark.parametrize("raw", documents())
def test_depth_matches_the_parsed_document_in_every_chunking(raw: bytes) -> None:
    expected = depth(json.loads(raw)) > 32
    assert too_deep(structure_of(raw), 32) is expected
    for size in (1, 2, 3, 7):
        chunked = Structure()
        for start in range(0, len(raw), size):
            chunked.feed(raw[start : start + size])
        assert chunked.value() == structure_of(raw)


def test_unclosed_and_unbalanced_runs_count_as_deep() -> None:
    assert too_deep(structure_of(b"[" * 100_000), 32)
    assert too_deep(structure_of(b"]" * 10 + b"[" * 40), 32)
    assert not too_deep(structure_of(b"[1, 2"), 32)  # malformed but shallow: the parser will say so


@pytest.mark.parametrize(("items", "limit", "expect_over"), [(1000, 1000, False), (1001, 1000, True),
                                                              (1, 1, False), (2, 1, True)])
def test_width_of_the_items_array(items: int, limit: int, expect_over: bool) -> None:
    body = {"items": [{"image_url": "https://a.example/[,].png", "metadata": {"a": list(range(50))}}] * items}
    assert (widest_near_top(structure_of(json.dumps(body).encode()), limit, 32) > limit) is expect_over


def test_width_ignores_wide_containers_below_depth_two() -> None:
    body = {"items": [{"metadata": {"a": list(range(5000))}}]}
    assert widest_near_top(structure_of(json.dumps(body).encode()), 1000, 32) == 1
    top_level = json.dumps(list(range(2000))).encode()
    assert widest_near_top(structure_of(top_level), 1000, 32) > 1000
