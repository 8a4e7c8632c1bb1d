"""`category_scores` on hand-written token streams, and on the stand-in's own log-probabilities."""

from __future__ import annotations

import json
import math

import pytest

from worker.inference.base import TokenLogprob
from worker.inference.category_scoring import category_scores
from worker.standin.logprobs import positions

O1, O2, O4, O5 = ("O1: Hate, Humiliation, Harassment", "O2: Violence, Harm, or Cruelty", "O4: Nudity Content",
                  "O5: Criminal Planning")
NA = "NA: None applying"


def lp(p: float) -> float:
    return math.log(p)


def tokens(*texts: str) -> list[TokenLogprob]:
    return [TokenLogprob(text, 0.0, ((text, 0.0),)) for text in texts]


def test_decided_at_the_digit_after_a_certain_o() -> None:
    stream = [
        *tokens('{"rating": "Unsafe", ', '"category": "', "O"),
        TokenLogprob("4", lp(0.7), (("4", lp(0.7)), ("3", lp(0.2)), ("#", lp(0.05)))),
        *tokens(": Nudity Content", '"}'),
    ]
    scores = category_scores(stream)
    assert scores == pytest.approx({O4: 0.7 / 0.9, "O3: Sexual Content": 0.2 / 0.9})
    assert list(scores or {}) == [O4, "O3: Sexual Content"]  # most likely first


def test_mass_of_na_at_the_first_token_and_of_digits_below_o() -> None:
    stream = [
        *tokens('"category": "'),
        TokenLogprob("O", lp(0.8), (("O", lp(0.8)), ("NA", lp(0.2)))),
        TokenLogprob("1", lp(0.5), (("1", lp(0.5)), ("2", lp(0.5)))),
        *tokens(": Hate, Humiliation, Harassment"),
    ]
    assert category_scores(stream) == pytest.approx({O1: 0.4, O2: 0.4, NA: 0.2})


def test_an_alternative_opening_several_categories_is_dropped() -> None:
    stream = [
        *tokens('"category": "'),
        TokenLogprob("NA", lp(0.6), (("NA", lp(0.6)), ("O", lp(0.4)))),
        *tokens(": None applying"),
    ]
    assert category_scores(stream) == {NA: 1.0}


def test_a_whole_code_token_carrying_the_quote() -> None:
    stream = [
        *tokens('{"category":'),
        TokenLogprob(' "O4', lp(0.9), ((' "O4', lp(0.9)), (' "NA', lp(0.05)), (' "O5', lp(0.05)), (" [", -1.0))),
        *tokens(': Nudity Content"}'),
    ]
    assert category_scores(stream) == pytest.approx({O4: 0.9, NA: 0.05, O5: 0.05})


def test_the_chosen_category_counts_when_not_listed_among_alternatives() -> None:
    stream = [*tokens('"category": "O'), TokenLogprob("7", lp(0.9), ()), *tokens(": Self-Harm")]
    assert category_scores(stream) == {"O7: Self-Harm": 1.0}


@pytest.mark.parametrize("stream", [None, [], tokens('{"rating": "Safe"}'), tokens('{"category": ')])
def test_none_when_there_is_nothing_to_read(stream: list[TokenLogprob] | None) -> None:
    assert category_scores(stream) is None


def test_junk_at_the_category_position_reads_as_none() -> None:
    stream = [*tokens('"category": "'), TokenLogprob("X", lp(0.9), (("X", lp(0.9)), ("#", lp(0.1))))]
    assert category_scores(stream) is None


@pytest.mark.parametrize("indent", [None, 4])
def test_the_stand_in_decides_o4_against_o5_and_na_alone(indent: int | None) -> None:
    def streamed(category: str) -> list[TokenLogprob]:
        text = json.dumps({"rating": "Unsafe", "category": category, "rationale": "r"}, indent=indent)
        return [TokenLogprob(t, lpr, tuple(top)) for t, lpr, top in positions(text, 0.89, 5)]

    assert category_scores(streamed(O4)) == pytest.approx({O4: 0.89, O5: 0.11})
    assert category_scores(streamed("O9: Disasters or Emergencies")) == pytest.approx(
        {"O9: Disasters or Emergencies": 0.89, O1: 0.11})
    assert category_scores(streamed(NA)) == {NA: 1.0}
