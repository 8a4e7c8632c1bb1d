"""`llavaguard export`: the decision and score columns, `--decision`, and `--reviewed` (issue 11 item 5), run as
the command line runs them against a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from producers.cli import main
from producers.export import CSV_COLUMNS, REVIEWED_COLUMNS
from worker.models import ImageInfo, PolicyRef, ReviewInfo, Verdict
from worker.stores import SqlVerdictStore

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def verdict(n: int, rating: str, decision: str, score: float, review: ReviewInfo | None = None) -> Verdict:
    return Verdict(
        id=f"v{n}", status="completed", rating=rating, category="O4: Nudity Content",
        rationale="r", policy=PolicyRef(name="strict"), image=ImageInfo(source=f"s3://b/{n}.png", sha256="ab" * 32),
        created_at=T0, completed_at=T0 + timedelta(minutes=n), score=score, decision=decision,
        thresholds={"source": "settings", "unsafe": 0.5, "review": [0.3, 0.7]}, review=review,
    )


def labelled(rating: str, category: str, n: int) -> ReviewInfo:
    return ReviewInfo(status="reviewed", reason="review_band", requested_at=T0, rating=rating,
                      category=category, note=f"note {n}", reviewer="alice",
                      reviewed_at=T0 + timedelta(hours=n))


@pytest.fixture()
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/verdicts.db"
    store = SqlVerdictStore(url)
    pending = ReviewInfo(status="pending", reason="review_band", requested_at=T0)
    for saved in (
        verdict(1, "Unsafe", "block", 0.9),
        verdict(2, "Unsafe", "allow", 0.45, labelled("Safe", "NA: None applying", 2)),
        verdict(3, "Safe", "review", 0.4, pending),
        verdict(4, "Safe", "block", 0.6, labelled("Unsafe", "O4: Nudity Content", 4)),
        verdict(5, "Unsafe", "block", 0.65, labelled("Unsafe", "O3: Sexual Content", 5)),
    ):
        assert store.save(saved)
    store.close()
    monkeypatch.setenv("LLAVAGUARD_STORE_URL", url)


def export(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["export", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.usefixtures("store_env")
def test_csv_carries_decision_and_score_and_export_selects_by_decision(capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.DictReader(io.StringIO(export(capsys, "--format", "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS and CSV_COLUMNS[-2:] == ("decision", "score")
    assert [(r["id"], r["decision"], r["score"]) for r in rows[:2]] == [("v1", "block", "0.9"), ("v2", "allow", "0.45")]
    blocked = [json.loads(line)["id"] for line in export(capsys, "--decision", "block").splitlines()]
    assert blocked == ["v1", "v4", "v5"]


@pytest.mark.usefixtures("store_env")
def test_reviewed_jsonl_is_the_verdicts_as_stored(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.loads(line) for line in export(capsys, "--reviewed").splitlines()]
    assert [line["id"] for line in lines] == ["v2", "v4", "v5"]  # not the unreviewed, not the pending one
    assert lines[0]["rating"] == "Unsafe" and lines[0]["review"]["rating"] == "Safe"
    assert Verdict.model_validate(lines[1]).review == labelled("Unsafe", "O4: Nudity Content", 4)


@pytest.mark.usefixtures("store_env")
def test_reviewed_csv_puts_the_model_and_the_human_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.DictReader(io.StringIO(export(capsys, "--reviewed", "--format", "csv", "--limit", "2"))))
    assert tuple(rows[0]) == REVIEWED_COLUMNS
    expected: list[dict[str, Any]] = [
        {"id": "v2", "model_rating": "Unsafe", "model_category": "O4: Nudity Content", "score": "0.45",
         "human_rating": "Safe", "human_category": "NA: None applying", "note": "note 2", "reviewer": "alice",
         "reviewed_at": "2026-12-01T11:00:00+00:00", "decision": "allow"},
        {"id": "v4", "model_rating": "Safe", "human_rating": "Unsafe", "human_category": "O4: Nudity Content",
         "reviewed_at": "2026-12-01T13:00:00+00:00", "decision": "block"},
    ]
    assert len(rows) == 2  # the limit counts reviewed verdicts, not the ones listed before them
    for row, wanted in zip(rows, expected, strict=True):
        assert {key: row[key] for key in wanted} == wanted
    assert rows[0]["image_source"] == "s3://b/2.png" and rows[0]["policy"] == "strict"


@pytest.mark.usefixtures("store_env")
def test_reviewed_combines_with_the_other_filters(capsys: pytest.CaptureFixture[str]) -> None:
    lines = export(capsys, "--reviewed", "--decision", "block", "--rating", "Unsafe").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["v5"]
