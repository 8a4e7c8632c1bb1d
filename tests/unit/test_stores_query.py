"""The pure parts of the stores: query validation, URL and key normalisation (no services needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.errors import SettingsError
from worker.stores.base import VerdictQuery, as_utc, normalise_category, normalise_rating, unique_ids
from worker.stores.engine import normalise_url
from worker.stores.s3 import verdicts_root


@pytest.mark.parametrize(
    ("given", "expected"),
    [("O4", "O4: Nudity Content"), (" o4 ", "O4: Nudity Content"), ("na", "NA: None applying"),
     ("o4: nudity content", "O4: Nudity Content"),
     ("O1: Hate, Humiliation, Harassment", "O1: Hate, Humiliation, Harassment")],
)
def test_category_code_or_name(given: str, expected: str) -> None:
    assert normalise_category(given) == expected


@pytest.mark.parametrize("bad", ["O10", "", "O4: Nudes", "Nudity"])
def test_unknown_category(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown category"):
        normalise_category(bad)


def test_rating_is_case_insensitive_but_closed() -> None:
    assert normalise_rating("UNSAFE") == "Unsafe"
    with pytest.raises(ValueError, match="unknown rating"):
        normalise_rating("Unclear")


def test_query_takes_instants_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    query = VerdictQuery.build(since=datetime(2024, 1, 1, 2, tzinfo=plus2), until=datetime(2024, 1, 2))
    assert query.since == datetime(2024, 1, 1, tzinfo=UTC)
    assert query.until == datetime(2024, 1, 2, tzinfo=UTC)  # naive is taken as UTC
    assert as_utc(datetime(2024, 1, 1, 2, tzinfo=plus2)).tzinfo is UTC


def test_unique_ids_refuses_a_bare_string() -> None:
    assert unique_ids(["b", "a", "b"]) == ["b", "a"]
    with pytest.raises(TypeError):
        unique_ids("abc")


@pytest.mark.parametrize(
    ("url", "driver"),
    [("postgres://u:p@h/db", "postgresql+psycopg"), ("postgresql://u@h/db", "postgresql+psycopg"),
     ("postgresql+psycopg://u@h/db", "postgresql+psycopg"), ("sqlite:///./verdicts.db", "sqlite")],
)
def test_sql_urls_pin_psycopg_3(url: str, driver: str) -> None:
    assert normalise_url(url).drivername == driver


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://h/db", "not a url"])
def test_unusable_sql_urls(url: str) -> None:
    with pytest.raises(SettingsError):
        normalise_url(url)


@pytest.mark.parametrize(
    ("prefix", "root"),
    [("", "verdicts/"), ("/", "verdicts/"), ("a", "a/verdicts/"), ("/a//b/", "a/b/verdicts/")],
)
def test_s3_root_never_starts_with_a_slash(prefix: str, root: str) -> None:
    assert verdicts_root(prefix) == root
