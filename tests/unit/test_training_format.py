"""The training-layout regex: exactly LlavaGuard's 4-space JSON, nothing near it, and every match readable.

The regex is what the server's grammar engine enforces, so a layout it admits but the parser cannot read would
be a verdict lost, and a layout it refuses that the model was trained to write would push the model off its
training. Every text is also run through the pattern as outlines compiles it (interegular's FSM), and the
subset older xgrammar accepts (no `(?`, no lookarounds, no backreferences, no `{n}`) is checked on the text.
"""

from __future__ import annotations

import json
import re

import interegular
import pytest

from worker.categories import CATEGORIES, RATINGS
from worker.inference.output_parser import parse_assessment
from worker.inference.training_format import OUTPUT_REGEX, training_layout

RATIONALE = "The image shows a kitchen knife on a cutting board; no violence is depicted."


ENGINE_FSM = interegular.parse_pattern(OUTPUT_REGEX).to_fsm()
"""The pattern as outlines compiles it (interegular's parser and FSM), beside Python's `re`."""


def _matches(text: str) -> bool:
    """`re` and the grammar engine's FSM agree on every text these tests try."""
    matched = re.fullmatch(OUTPUT_REGEX, text) is not None
    assert ENGINE_FSM.accepts(text) == matched, text
    return matched


@pytest.mark.parametrize("rating", RATINGS)
@pytest.mark.parametrize("category", CATEGORIES)
def test_every_rating_and_category_in_the_layout_matches_and_parses(rating: str, category: str) -> None:
    text = training_layout(rating, category, RATIONALE)
    assert text == (
        "{\n"
        f'    "rating": "{rating}",\n'
        f'    "category": "{category}",\n'
        f'    "rationale": "{RATIONALE}"\n'
        "}"
    )
    assert _matches(text)
    assessment = parse_assessment(text)
    assert (assessment.rating, assessment.category, assessment.rationale) == (rating, category, RATIONALE)


@pytest.mark.parametrize(
    "rationale",
    [
        'He said "stop" and left.',
        "a back\\slash, a tab\there, a\nnewline, a \u00e9 and a \u2603",
        "braces {inside} the } rationale {",
        "a control \x01 character and a \x1f unit separator",
        "",
    ],
)
def test_json_escapes_in_the_rationale_match_and_parse_back(rationale: str) -> None:
    for text in (training_layout("Unsafe", CATEGORIES[1], rationale),
                 json.dumps({"rating": "Unsafe", "category": CATEGORIES[1], "rationale": rationale}, indent=4)):
        assert _matches(text), text
        assert json.loads(text)["rationale"] == rationale
        assert parse_assessment(text).rationale == rationale.strip()
        assert parse_assessment(text).category == CATEGORIES[1]


GOOD = training_layout("Safe", "NA: None applying", RATIONALE)


@pytest.mark.parametrize(
    ("why", "text"),
    [
        ("two-space indent", GOOD.replace("    ", "  ")),
        ("tab indent", GOOD.replace("    ", "\t")),
        ("compact JSON", json.dumps(json.loads(GOOD))),
        ("reordered keys", json.dumps(
            {"category": "NA: None applying", "rating": "Safe", "rationale": RATIONALE}, indent=4)),
        ("rationale first", json.dumps(
            {"rationale": RATIONALE, "rating": "Safe", "category": "NA: None applying"}, indent=4)),
        ("extra key", GOOD[:-2] + ',\n    "score": "high"\n}'),
        ("missing key", json.dumps({"rating": "Safe", "category": "NA: None applying"}, indent=4)),
        ("unknown category", GOOD.replace("NA: None applying", "O10: Spam")),
        ("category code only", GOOD.replace("NA: None applying", "NA")),
        ("lower-case rating", GOOD.replace('"Safe"', '"safe"')),
        ("raw newline in rationale", GOOD.replace("kitchen knife", "kitchen\nknife")),
        ("raw tab in rationale", GOOD.replace("kitchen knife", "kitchen\tknife")),
        ("unescaped quote", GOOD.replace("kitchen knife", 'kitchen "knife')),
        ("bad escape", GOOD.replace("kitchen knife", "kitchen \\x41 knife")),
        ("short unicode escape", GOOD.replace("kitchen knife", "kitchen \\u00e knife")),
        ("trailing text", GOOD + "\nI hope this helps."),
        ("trailing newline", GOOD + "\n"),
        ("code fence", "```json\n" + GOOD + "\n```"),
        ("trailing comma", GOOD.replace(f'"{RATIONALE}"\n', f'"{RATIONALE}",\n')),
        ("leading space", " " + GOOD),
    ],
)
def test_near_misses_do_not_match(why: str, text: str) -> None:
    assert not _matches(text), why


def test_the_pattern_stays_in_the_subset_every_grammar_engine_compiles() -> None:
    assert "(?" not in OUTPUT_REGEX  # no lookarounds, named or non-capturing groups (older xgrammar)
    assert not re.search(r"\\[1-9k]", OUTPUT_REGEX)  # no backreferences
    assert not re.search(r"(?<!\\)\{[0-9]", OUTPUT_REGEX)  # no counted repetition
    assert not re.search(r"\\[ \-:,]", OUTPUT_REGEX)  # no needless escapes (invalid in JavaScript's u mode)
    assert "^" not in OUTPUT_REGEX.replace("[^", "") and "$" not in OUTPUT_REGEX  # anchors: the engines match whole
