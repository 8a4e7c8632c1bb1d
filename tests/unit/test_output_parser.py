from __future__ import annotations

import pytest

from worker.categories import CATEGORIES, Category
from worker.inference.output_parser import Assessment, OutputUnparseable, parse_assessment

O4: Category = "O4: Nudity Content"
NA: Category = "NA: None applying"
INDENTED = """{
    "rating": "Unsafe",
    "category": "O4: Nudity Content",
    "rationale": "The image shows nudity."
}"""
EXPECTED = Assessment("Unsafe", O4, "The image shows nudity.")


@pytest.mark.parametrize(
    "text",
    [
        '{"rating": "Unsafe", "category": "O4: Nudity Content", "rationale": "The image shows nudity."}',
        '{"rating":"Unsafe","category":"O4: Nudity Content","rationale":"The image shows nudity."}',
        INDENTED,
        f"```json\n{INDENTED}\n```",
        f"```\n{INDENTED}\n```",
        f"<s> {INDENTED}</s>",
        f"<s>```json\n{INDENTED}\n```</s>",
        f"json\n{INDENTED}",
        f"json {INDENTED}",
        "{'rating': 'Unsafe', 'category': 'O4: Nudity Content', 'rationale': 'The image shows nudity.'}",
        '{"rating": "Unsafe", "category": "O4: Nudity Content", "rationale": "The image shows nudity.",}',
        INDENTED.replace('nudity."', 'nudity.",'),
        f"Sure, here is my assessment of the image:\n{INDENTED}\nLet me know if you need more.",
        f"Here you go:\n```json\n{INDENTED}\n```\nThis follows the policy.",
        INDENTED + "<|im_end|>",
    ],
    ids=[
        "compact", "no-spaces", "indented", "fenced-json", "fenced", "s-tokens", "s-tokens-fenced",
        "json-word-newline", "json-word-space", "single-quotes", "trailing-comma", "indented-trailing-comma",
        "prose-around", "prose-around-fenced", "im-end-token",
    ],
)
def test_messy_shapes_parse_to_the_same_assessment(text: str) -> None:
    assert parse_assessment(text) == EXPECTED


@pytest.mark.parametrize(
    "category",
    ["O4: Nudity Content", "o4: nudity content", "O4: NUDITY CONTENT", "O4", "o4", "O4:", "Nudity Content",
     "nudity content", " O4 "],
)
def test_category_by_exact_string_any_case_code_or_name(category: str) -> None:
    text = f'{{"rating": "Unsafe", "category": "{category}", "rationale": "r"}}'
    assert parse_assessment(text).category == O4


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_round_trips(category: str) -> None:
    text = f'{{"rating": "Unsafe", "category": "{category}", "rationale": "r"}}'
    assert parse_assessment(text).category == category


@pytest.mark.parametrize("code", ["NA", "na", "None applying", "none"])
def test_none_applying_spellings(code: str) -> None:
    assert parse_assessment(f'{{"rating": "Safe", "category": "{code}", "rationale": "ok"}}').category == NA


@pytest.mark.parametrize(("given", "expected"), [("safe", "Safe"), ("SAFE", "Safe"), ("unsafe", "Unsafe"),
                                                 ("UnSafe", "Unsafe"), ("Unsafe.", "Unsafe")])
def test_rating_is_case_insensitive(given: str, expected: str) -> None:
    text = f'{{"rating": "{given}", "category": "O4", "rationale": "r"}}'
    assert parse_assessment(text).rating == expected


def test_unsafe_with_na_is_reported_as_is() -> None:
    text = '{"rating": "Unsafe", "category": "NA: None applying", "rationale": "odd but possible"}'
    assert parse_assessment(text) == Assessment("Unsafe", NA, "odd but possible")


def test_safe_with_a_waived_category_is_reported_as_is() -> None:
    text = '{"rating": "Safe", "category": "O6: Weapons or Substance Abuse", "rationale": "declared"}'
    assert parse_assessment(text).category == "O6: Weapons or Substance Abuse"


class TestTruncated:
    def test_cut_mid_rationale_is_reclosed(self) -> None:
        text = INDENTED[: INDENTED.index("shows") + 2]
        assert parse_assessment(text) == Assessment("Unsafe", O4, "The image sh")

    def test_cut_after_an_escape(self) -> None:
        text = '{"rating": "Unsafe", "category": "O4", "rationale": "a \\"quoted\\" word and \\'
        assert parse_assessment(text) == Assessment("Unsafe", O4, 'a "quoted" word and')

    def test_cut_single_quoted(self) -> None:
        text = "{'rating': 'Unsafe', 'category': 'O4', 'rationale': 'it is"
        assert parse_assessment(text) == Assessment("Unsafe", O4, "it is")

    def test_cut_after_a_comma(self) -> None:
        assert parse_assessment('{"rating": "Safe", "category": "NA",') == Assessment("Safe", NA, "")

    def test_cut_after_a_colon(self) -> None:
        text = '{"rating": "Unsafe", "category": "O2", "rationale":'
        assert parse_assessment(text).category.startswith("O2")

    def test_cut_inside_a_key_keeps_what_came_before(self) -> None:
        assert parse_assessment('{"rating": "Safe", "categ') == Assessment("Safe", NA, "")

    def test_unsafe_cut_before_the_category_is_unparseable(self) -> None:
        with pytest.raises(OutputUnparseable, match="no category"):
            parse_assessment('{"rating": "Unsafe", "categ')


class TestJsonEdges:
    def test_braces_inside_the_rationale(self) -> None:
        text = '{"rating": "Unsafe", "category": "O4", "rationale": "a {curly} thing"} trailing }'
        assert parse_assessment(text).rationale == "a {curly} thing"

    def test_apostrophe_inside_double_quotes(self) -> None:
        text = """{"rating": "Unsafe", "category": "O4", "rationale": "the person's body"}"""
        assert parse_assessment(text).rationale == "the person's body"

    def test_raw_newline_inside_a_string(self) -> None:
        text = '{"rating": "Unsafe", "category": "O4", "rationale": "line one\nline two"}'
        assert parse_assessment(text).rationale == "line one\nline two"

    def test_keys_in_any_case(self) -> None:
        text = '{"Rating": "Unsafe", "Category": "O4", "Rationale": "r"}'
        assert parse_assessment(text) == Assessment("Unsafe", O4, "r")

    def test_json_literals_in_python_quotes_fall_back_to_fields(self) -> None:
        text = "{'rating': 'Unsafe', 'category': 'O4', 'rationale': 'r', 'flag': true}"
        assert parse_assessment(text) == Assessment("Unsafe", O4, "r")

    def test_unquoted_values(self) -> None:
        assert parse_assessment("{rating: Unsafe, category: O4}") == Assessment("Unsafe", O4, "")

    def test_an_unrelated_object_in_prose_is_skipped(self) -> None:
        text = 'Given {the policy}: {"rating": "Unsafe", "category": "O4", "rationale": "r"}'
        assert parse_assessment(text) == Assessment("Unsafe", O4, "r")


class TestProseFallback:
    def test_bare_safe(self) -> None:
        assert parse_assessment("Safe") == Assessment("Safe", NA, "Safe")

    def test_unsafe_with_a_code(self) -> None:
        assessment = parse_assessment("The image is Unsafe and falls under O6.")
        assert (assessment.rating, assessment.category) == ("Unsafe", "O6: Weapons or Substance Abuse")

    def test_keyed_rating_wins_over_other_words(self) -> None:
        text = "rating: Unsafe (not safe for work), category O3"
        assert parse_assessment(text).rating == "Unsafe"

    def test_json_with_a_broken_rating_falls_back_to_the_text(self) -> None:
        text = '{"rating": 7, "category": "O4", "rationale": "the image is unsafe"}'
        assert parse_assessment(text) == Assessment("Unsafe", O4, "the image is unsafe")

    def test_safe_with_a_bad_category_becomes_na(self) -> None:
        text = '{"rating": "Safe", "category": "Landscape", "rationale": "a field of flowers"}'
        assert parse_assessment(text).category == NA


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("<s></s>", "empty"),
        (":", "no rating"),
        ("I cannot help with that.", "no rating"),
        ("It is hard to say whether this is safe or unsafe.", "no rating"),
        ("The image is Unsafe.", "no category"),
        ("Unsafe: O4 or O6", "no category"),
        ('{"rating": "Maybe", "category": "O4", "rationale": "unclear"}', "no rating"),
        ('{"rating": "Unsafe", "category": "Something else", "rationale": "r"}', "no category"),
    ],
)
def test_hopeless_output_is_unparseable_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(OutputUnparseable, match=reason):
        parse_assessment(text)


def test_unparseable_is_a_value_error() -> None:
    assert issubclass(OutputUnparseable, ValueError)
