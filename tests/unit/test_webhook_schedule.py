"""Retry schedule, Retry-After, outcome classification, and which events a verdict produces."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from worker.errors import SettingsError
from worker.models import ErrorInfo, ImageInfo, PolicyRef, Verdict, utcnow
from worker.notify.events import (
    COMPLETED,
    FAILED,
    UNSAFE,
    delivery_id,
    event_body,
    events_for,
    targets_for,
)
from worker.notify.schedule import DEFAULT_SCHEDULE_S, Outcome, RetrySchedule, classify_status, parse_retry_after
from worker.settings import load_settings


def test_default_schedule_is_eight_attempts_over_about_a_day() -> None:
    schedule = RetrySchedule()
    assert schedule.max_attempts == 8
    assert 24 * 3600 < sum(DEFAULT_SCHEDULE_S) < 30 * 3600
    assert schedule.delay_after(8) is None and schedule.delay_after(0) is None


def test_delays_follow_the_schedule_with_bounded_jitter() -> None:
    schedule = RetrySchedule.of([5, 300])
    rng = random.Random(7)
    firsts = [schedule.delay_after(1, rng=rng) for _ in range(200)]
    assert all(d is not None and 4.0 <= d <= 6.0 for d in firsts)
    assert len({round(d or 0, 3) for d in firsts}) > 100  # jittered, not constant
    second = schedule.delay_after(2, rng=rng)
    assert second is not None and 240 <= second <= 360
    assert schedule.delay_after(3) is None


def test_retry_after_wins_when_longer_but_is_capped_by_the_longest_step() -> None:
    schedule = RetrySchedule.of([5, 300])
    assert schedule.delay_after(1, retry_after_s=120) == 120
    assert schedule.delay_after(1, retry_after_s=10**6) == 300
    shorter = schedule.delay_after(1, retry_after_s=1)
    assert shorter is not None and shorter >= 4.0


def test_retry_after_parsing() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(bad) is None


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.DELIVERED), (204, Outcome.DELIVERED), (410, Outcome.GONE), (301, Outcome.RETRY),
    (404, Outcome.RETRY), (429, Outcome.RETRY), (500, Outcome.RETRY), (503, Outcome.RETRY),
])
def test_status_classification(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def _verdict(status: str, rating: str | None) -> Verdict:
    now = utcnow()
    if status == "failed":
        return Verdict(id="m1", status="failed", policy=PolicyRef(name="p"), image=ImageInfo(),
                       error=ErrorInfo(code="image_empty", message="x"), created_at=now, completed_at=now)
    category = "NA: None applying" if rating == "Safe" else "O1: Hate, Humiliation, Harassment"
    return Verdict.model_validate({"id": "m1", "status": "completed", "rating": rating, "category": category,
                                   "policy": {"name": "p"}, "image": {}, "created_at": now, "completed_at": now})


@pytest.mark.parametrize(("status", "rating", "enabled", "expected"), [
    ("completed", "Unsafe", (), [UNSAFE]),
    ("completed", "Safe", (), []),
    ("failed", None, (), []),
    ("completed", "Unsafe", (COMPLETED, FAILED), [UNSAFE, COMPLETED]),
    ("completed", "Safe", (COMPLETED,), [COMPLETED]),
    ("failed", None, (COMPLETED, FAILED), [FAILED]),
])
def test_event_selection(status: str, rating: str | None, enabled: tuple[str, ...], expected: list[str]) -> None:
    assert events_for(_verdict(status, rating), enabled) == expected


def test_body_carries_type_timestamp_and_the_verdict_json() -> None:
    verdict = _verdict("completed", "Unsafe")
    body = json.loads(event_body(UNSAFE, verdict))
    assert body == {"type": UNSAFE, "timestamp": verdict.model_dump(mode="json")["completed_at"],
                    "data": verdict.model_dump(mode="json")}


def test_delivery_ids_are_stable_per_event_and_target_and_dotless() -> None:
    first = delivery_id("m1", UNSAFE, "https://a.example/x")
    assert first == delivery_id("m1", UNSAFE, "https://a.example/x")
    others = {delivery_id("m2", UNSAFE, "https://a.example/x"), delivery_id("m1", COMPLETED, "https://a.example/x"),
              delivery_id("m1", UNSAFE, "https://b.example/x")}
    assert first not in others and len(others) == 3
    assert first.startswith("msg_") and "." not in first


def test_targets_are_the_endpoints_then_the_callback_once() -> None:
    targets = targets_for(["https://a/x", "https://b/y", "https://a/x"], "https://a/x")
    assert [(t.url, t.trusted) for t in targets] == [("https://a/x", True), ("https://b/y", True)]
    targets = targets_for(["https://a/x"], "https://cb/z")
    assert [(t.url, t.trusted) for t in targets] == [("https://a/x", True), ("https://cb/z", False)]
    assert targets_for([], None) == []


def test_webhook_settings_parse_and_refuse_nonsense() -> None:
    settings = load_settings(webhook_events="moderation.completed", webhook_retry_schedule_s="0.2, 0.5")
    assert settings.webhook_events == [COMPLETED] and settings.webhook_retry_schedule_s == [0.2, 0.5]
    with pytest.raises(SettingsError, match=r"^LLAVAGUARD_WEBHOOK_EVENTS: .*unknown event"):
        load_settings(webhook_events="moderation.deleted")
    with pytest.raises(SettingsError, match=r"^LLAVAGUARD_WEBHOOK_RETRY_SCHEDULE_S:"):
        load_settings(webhook_retry_schedule_s="5,-1")
    with pytest.raises(SettingsError, match=r"^LLAVAGUARD_WEBHOOK_URL:"):
        load_settings(webhook_url="ftp://x/y")
