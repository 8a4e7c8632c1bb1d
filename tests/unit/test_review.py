"""Human review against a real Redis: who is queued, the retained copy and its retention, labels, events.

The decision step is not this package's (worker/decisions); these tests set `decision` on the verdicts as
that step would, and key nothing off anything else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from worker.errors import ReviewConflict, ReviewNotFound
from worker.models import ModerationRequest, Verdict
from worker.notify.events import REVIEW_REQUESTED, REVIEWED, delivery_id
from worker.notify.outbox import Outbox
from worker.review.desk import ReviewDesk
from worker.review.hook import ReviewHook
from worker.review.intake import ReviewIntake
from worker.review.keys import IMAGE_KEY
from worker.review.queue import ReviewQueue
from worker.review.retention import RetainedImages
from worker.review.sampling import QUALITY_SAMPLE, REVIEW_BAND, SampleRates, fraction
from worker.stores import MemoryVerdictStore

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ENDPOINT = "http://127.0.0.1:9/hooks"
JPEG = b"\xff\xd8\xff\xe0 the prepared payload"


def verdict(id: str, decision: str | None, rating: str = "Unsafe") -> Verdict:
    return Verdict.model_validate({
        "id": id, "status": "completed", "rating": rating, "category": "O4: Nudity Content",
        "rationale": "why", "policy": {"name": "llavaguard-v1.2"}, "image": {"source": "https://x.example/a.jpg"},
        "created_at": T0, "completed_at": T0, "decision": decision, "score": 0.55,
    })


def request(id: str) -> ModerationRequest:
    return ModerationRequest.model_validate({"id": id, "image": {"url": "https://x.example/a.jpg"}})


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    conn: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture()
def outbox(redis_url: str, client: redis.Redis[bytes]) -> Iterator[Outbox]:
    box = Outbox.from_url(redis_url, retention_s=3600)
    yield box
    box.close()


def images(client: redis.Redis[bytes], retention_s: int = 60, max_items: int = 100) -> RetainedImages:
    return RetainedImages(client, retention_s=retention_s, max_items=max_items)


def test_only_review_decisions_and_the_sample_are_marked_and_only_their_image_is_kept(
    client: redis.Redis[bytes],
) -> None:
    kept = images(client)
    step = ReviewIntake(kept, SampleRates(allow=0.0, block=0.0))
    marked = step(verdict("band", "review"), JPEG, "image/jpeg")
    assert marked.review is not None and marked.review.status == "pending" and marked.review.reason == REVIEW_BAND
    found = kept.get("band")
    assert found is not None and (found.data, found.mime) == (JPEG, "image/jpeg")
    for decision in ("allow", "block", None):
        assert step(verdict(f"d-{decision}", decision), JPEG, "image/jpeg").review is None
        assert kept.get(f"d-{decision}") is None
    failed = Verdict.model_validate({**verdict("f", "review").model_dump(), "status": "failed", "rating": None,
                                     "category": None, "error": {"code": "fetch_failed", "message": "x"}})
    assert step(failed, JPEG, "image/jpeg").review is None


def test_quality_sampling_takes_the_configured_share_by_id_the_same_way_every_time(
    client: redis.Redis[bytes],
) -> None:
    step = ReviewIntake(images(client, max_items=10_000), SampleRates(allow=0.1, block=1.0))
    allowed = [step(verdict(f"a{i}", "allow", "Safe"), JPEG, "image/jpeg") for i in range(2000)]
    sampled = [v for v in allowed if v.review is not None]
    assert 150 < len(sampled) < 250  # 10 % of 2000, by a uniform hash of the id
    assert all(v.review is not None and v.review.reason == QUALITY_SAMPLE for v in sampled)
    assert all((fraction(v.id) < 0.1) == (v.review is not None) for v in allowed)  # a redelivery decides alike
    assert step(verdict("b", "block"), JPEG, "image/jpeg").review is not None


def test_the_retained_copy_is_deleted_after_its_retention(client: redis.Redis[bytes]) -> None:
    kept = images(client, retention_s=1)
    ReviewIntake(kept, SampleRates())(verdict("short", "review"), JPEG, "image/jpeg")
    assert kept.get("short") is not None and 0 < client.ttl(IMAGE_KEY + "short") <= 1
    deadline = time.monotonic() + 5
    while kept.get("short") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kept.get("short") is None
    assert client.exists(IMAGE_KEY + "short") == 0  # gone from Redis itself, not just hidden


def test_the_number_of_copies_is_bounded_the_item_still_queues(client: redis.Redis[bytes]) -> None:
    kept = images(client, max_items=2)
    step = ReviewIntake(kept, SampleRates())
    marked = [step(verdict(f"n{i}", "review"), JPEG, "image/jpeg") for i in range(3)]
    assert all(v.review is not None for v in marked)
    assert [kept.get(f"n{i}") is not None for i in range(3)] == [True, True, False]
    kept.delete("n0")
    assert kept.retain("n2", JPEG, "image/jpeg") is True


def test_the_hook_queues_once_and_requests_review_once_even_when_redelivered(
    client: redis.Redis[bytes], outbox: Outbox,
) -> None:
    queue = ReviewQueue(client)
    hook = ReviewHook(queue, outbox, [ENDPOINT])
    marked = ReviewIntake(images(client), SampleRates())(verdict("h1", "review"), JPEG, "image/jpeg")
    hook(request("h1"), marked, True)
    hook(request("h1"), marked, False)
    hook(request("h2"), verdict("h2", "allow"), True)
    assert queue.ids("pending", limit=10) == ["h1"] and queue.count("pending") == 1
    delivery = outbox.get(delivery_id("h1", REVIEW_REQUESTED, ENDPOINT))
    assert delivery is not None and delivery.trusted and delivery.event_type == REVIEW_REQUESTED
    body = json.loads(delivery.body)
    assert body["type"] == REVIEW_REQUESTED and body["data"]["review"]["status"] == "pending"
    assert len(outbox.recent(limit=10)) == 1


@pytest.fixture()
def desk(client: redis.Redis[bytes], outbox: Outbox) -> ReviewDesk:
    store = MemoryVerdictStore()
    queue = ReviewQueue(client)
    kept = images(client)
    for id in ("q1", "q2"):
        marked = ReviewIntake(kept, SampleRates())(verdict(id, "review"), JPEG, "image/jpeg")
        store.save(marked)
        ReviewHook(queue, outbox, [ENDPOINT])(request(id), marked, True)
    store.save(verdict("plain", "allow"))
    return ReviewDesk(store, queue, kept, outbox, [ENDPOINT])


def test_a_label_becomes_the_final_decision_beside_the_model_answer(desk: ReviewDesk, outbox: Outbox) -> None:
    assert [v.id for v in desk.items("pending")] == ["q1", "q2"]
    labelled = desk.label("q1", "safe", "NA", "a statue", reviewer="key_r")
    assert labelled.decision == "allow" and labelled.rating == "Unsafe" and labelled.score == 0.55  # model's
    review = labelled.review
    assert review is not None and review.status == "reviewed" and review.reviewer == "key_r"
    assert (review.rating, review.category, review.note) == ("Safe", "NA: None applying", "a statue")
    assert desk.store.get("q1") == labelled
    assert [v.id for v in desk.items("pending")] == ["q2"] and [v.id for v in desk.items("reviewed")] == ["q1"]
    assert desk.image("q1") is None and desk.image("q2") is not None  # the copy goes with the label
    assert desk.label("q2", "Unsafe", "O4", None, reviewer="key_r").decision == "block"
    event = outbox.get(delivery_id("q1", REVIEWED, ENDPOINT))
    assert event is not None and json.loads(event.body)["data"]["decision"] == "allow"
    assert json.loads(event.body)["timestamp"] == review.model_dump(mode="json")["reviewed_at"]


def test_labels_are_recorded_once(desk: ReviewDesk) -> None:
    first = desk.label("q1", "Unsafe", "O4", None, reviewer="key_r")
    assert desk.label("q1", "Unsafe", "O4", None, reviewer="key_other") == first  # the same label: a no-op
    with pytest.raises(ReviewConflict):
        desk.label("q1", "Safe", "NA", None, reviewer="key_other")
    with pytest.raises(ReviewNotFound):
        desk.label("plain", "Safe", "NA", None, reviewer="key_r")  # stored, never queued
    with pytest.raises(ReviewNotFound):
        desk.get("nope")
    with pytest.raises(ValueError, match="rating"):
        desk.label("q2", "maybe", "NA", None, reviewer="key_r")
    with pytest.raises(ValueError, match="category"):
        desk.label("q2", "Safe", "O99", None, reviewer="key_r")
    with pytest.raises(ValueError, match="note"):
        desk.label("q2", "Safe", "NA", "x" * 2001, reviewer="key_r")


def test_keep_after_label_keeps_the_copy_until_its_retention(desk: ReviewDesk) -> None:
    desk.keep_after_label = True
    desk.label("q1", "Unsafe", "O4", None, reviewer="key_r")
    assert desk.image("q1") is not None
