"""`rating_score` on hand-written token streams: where the rating is decided and what the alternatives mean."""

from __future__ import annotations

import math

import pytest

from worker.inference.base import TokenLogprob
from worker.inference.scoring import rating_score


def lp(p: float) -> float:
    return math.log(p)


def tokens(*texts: str) -> list[TokenLogprob]:
    """Tokens chosen with certainty and no alternatives (the parts of an answer that decide nothing)."""
    return [TokenLogprob(text, 0.0, ((text, 0.0),)) for text in texts]


def test_whole_rating_tokens_under_a_schema() -> None:
    stream = [
        *tokens('{"', "rating", '":', ' "'),
        TokenLogprob("Unsafe", lp(0.8), (("Unsafe", lp(0.8)), ("Safe", lp(0.15)), ("Uns", lp(0.01)))),
        *tokens('",', ' "category": "O1"}'),
    ]
    scored = rating_score(stream)
    assert scored.source == "logprobs"
    assert scored.score == pytest.approx(0.81 / 0.96)


def test_unsafe_split_into_un_and_safe_is_decided_at_un() -> None:
    stream = [
        *tokens("{\n", "    ", '"rating"', ": ", '"'),
        TokenLogprob("Un", lp(0.3), (("Safe", lp(0.6)), ("Un", lp(0.3)), ("S", lp(0.05)))),
        TokenLogprob("safe", lp(0.99), (("safe", lp(0.99)), ("sure", lp(0.01)))),  # after the decision: ignored
        *tokens('",\n'),
    ]
    assert rating_score(stream).score == pytest.approx(0.3 / 0.95)


def test_the_deciding_token_may_carry_the_opening_quote() -> None:
    stream = [
        *tokens('{"rating":'),
        TokenLogprob(' "Safe', lp(0.7), ((' "Safe', lp(0.7)), (' "Un', lp(0.2)), (" [", lp(0.1)))),
        *tokens('"}'),
    ]
    assert rating_score(stream).score == pytest.approx(0.2 / 0.9)


def test_the_rating_need_not_be_the_first_field() -> None:
    stream = [
        *tokens("Sure. ", '{"category": "O2: Violence, Harm, or Cruelty", ', '"rationale": "Safe enough?", '),
        *tokens('"rating": "'),
        TokenLogprob("Unsafe", lp(0.9), (("Unsafe", lp(0.9)), ("Safe", lp(0.1)))),
        *tokens('"}'),
    ]
    assert rating_score(stream).score == pytest.approx(0.9)


def test_no_alternatives_normalises_over_the_chosen_token() -> None:
    stream = [*tokens('{"rating": "'), TokenLogprob("Safe", lp(0.6)), *tokens('"}')]
    scored = rating_score(stream)
    assert (scored.score, scored.source) == (0.0, "logprobs")


def test_junk_alternatives_are_dropped() -> None:
    stream = [
        *tokens('{"rating": "'),
        TokenLogprob("Unsafe", lp(0.5), (("Unsafe", lp(0.5)), ("unsafe", lp(0.2)), ("\u00bf", lp(0.2)),
                                         ("Safe", lp(0.1)))),
        *tokens('"}'),
    ]
    assert rating_score(stream).score == pytest.approx(0.5 / 0.6)


def test_no_alternative_begins_a_rating() -> None:
    stream = [*tokens('{"rating": "'), TokenLogprob("maybe", lp(0.9), (("maybe", lp(0.9)), ("no", lp(0.1))))]
    assert (rating_score(stream).score, rating_score(stream).source) == (None, "rating_token_unmatched")


@pytest.mark.parametrize("stream", [tokens(":"), tokens('{"category": "NA"}'), tokens('{"rating": "')])
def test_no_rating_in_the_answer(stream: list[TokenLogprob]) -> None:
    assert (rating_score(stream).score, rating_score(stream).source) == (None, "rating_not_found")


def test_none_when_not_requested_or_not_returned() -> None:
    assert rating_score(None, requested=False).source == "not_requested"
    assert rating_score(tokens('{"rating": "Safe"}'), requested=False).score is None
    assert (rating_score(None).score, rating_score(None).source) == (None, "backend_returned_none")
    assert rating_score([]).source == "backend_returned_none"


def test_minus_infinity_is_probability_zero() -> None:
    stream = [*tokens('{"rating": "'), TokenLogprob("Safe", 0.0, (("Safe", 0.0), ("Unsafe", -math.inf)))]
    assert rating_score(stream).score == 0.0
