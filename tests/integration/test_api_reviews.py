"""The review endpoints over HTTP (issue 11): reviewer keys apart from producer keys, the queue, the retained
image served by the API, labels, problem+json errors. Real uvicorn API, real Redis, a SQLite store; the
queue is filled the way a worker fills it (the review step, the store, the hook), with `decision` set as the
decision step would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from producers.cli import main
from tests.api_server import running_api
from worker import composition
from worker.models import ModerationRequest, Verdict
from worker.owners import key_id
from worker.settings import Settings, load_settings
from worker.stores import open_store

PRODUCER, ADMIN, REVIEWER = "producer-0123456789", "admin-0123456789", "reviewer-0123456789"
PROBLEM = "application/problem+json"
JPEG = b"\xff\xd8\xff\xe0 prepared"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def queued(settings: Settings, id: str) -> None:
    """What a worker does for a verdict decided `review`: mark and retain, store, queue."""
    verdict = Verdict.model_validate({
        "id": id, "status": "completed", "rating": "Unsafe", "category": "O2: Violence, Harm, or Cruelty",
        "rationale": "a knife", "policy": {"name": "llavaguard-v1.2"},
        "image": {"source": "https://origin.example/secret.jpg", "width": 4, "height": 4}, "score": 0.62,
        "created_at": T0, "completed_at": T0, "decision": "review",
    })
    marked = composition.review_intake(settings)(verdict, JPEG, "image/jpeg")
    store = open_store(settings.store_url)
    store.save(marked)
    store.close()
    request = ModerationRequest.model_validate({"id": id, "image": {"url": "https://origin.example/secret.jpg"}})
    composition.review_hook(settings)(request, marked, True)


@pytest.fixture()
def settings(tmp_path: Path, redis_url: str) -> Settings:
    redis.Redis.from_url(redis_url).flushdb()
    return load_settings(redis_url=redis_url, store_url=f"sqlite:///{tmp_path}/v.db", api_keys=PRODUCER,
                         api_admin_keys=ADMIN, api_reviewer_keys=REVIEWER, s3_endpoint_url="http://127.0.0.1:9")


@pytest.fixture()
def api(settings: Settings) -> Iterator[httpx.Client]:
    with running_api(settings) as url, httpx.Client(base_url=url) as client:
        queued(settings, "r1")
        queued(settings, "r2")
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ENDPOINTS = [("GET", "/v1/reviews"), ("GET", "/v1/reviews/r1"), ("GET", "/v1/reviews/r1/image"),
             ("POST", "/v1/reviews/r1")]


def test_producer_and_admin_keys_get_403_no_key_401_and_a_reviewer_key_opens_no_moderation(
    api: httpx.Client,
) -> None:
    for method, path in ENDPOINTS:
        body = {"rating": "Safe", "category": "NA"} if method == "POST" else None
        for key, status in ((PRODUCER, 403), (ADMIN, 403), ("wrong-key-0123456789", 401)):
            answer = api.request(method, path, headers=auth(key), json=body)
            assert answer.status_code == status and answer.headers["content-type"] == PROBLEM, (path, answer.text)
        answer = api.request(method, path, json=body)
        assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    assert api.get("/v1/reviews/r1", headers=auth(REVIEWER)).status_code == 200
    assert api.get("/v1/reviews/r1").status_code == 401
    assert api.get("/v1/reviews/r1", headers=auth(PRODUCER)).json()["code"] == "forbidden"

    assert api.get("/v1/moderations/r1", headers=auth(REVIEWER)).status_code == 401
    answer = api.post("/v1/moderations", headers=auth(REVIEWER), json={"image_url": "https://x.example/a.jpg"})
    assert answer.status_code == 401


def test_the_queue_an_item_and_its_retained_image(api: httpx.Client) -> None:
    listing = api.get("/v1/reviews", params={"status": "pending"}, headers=auth(REVIEWER)).json()
    assert [item["id"] for item in listing["items"]] == ["r1", "r2"] and listing["pending"] == 2
    item = api.get("/v1/reviews/r1", headers=auth(REVIEWER)).json()
    verdict = item["verdict"]
    assert verdict["review"]["status"] == "pending" and verdict["review"]["reason"] == "review_band"
    assert (verdict["score"], verdict["rationale"], verdict["decision"]) == (0.62, "a knife", "review")
    assert verdict["image"]["source"] is None and "origin.example" not in api.get(
        "/v1/reviews", headers=auth(REVIEWER)).text  # never the original URL
    image = api.get(item["image_url"], headers=auth(REVIEWER))
    assert image.status_code == 200 and image.content == JPEG and image.headers["content-type"] == "image/jpeg"
    assert image.headers["cache-control"] == "no-store"
    for path in ("/v1/reviews/unknown", "/v1/reviews/bad%20id/image"):
        answer = api.get(path, headers=auth(REVIEWER))
        assert answer.status_code == 404 and answer.headers["content-type"] == PROBLEM
    assert api.get("/v1/reviews", params={"status": "maybe"}, headers=auth(REVIEWER)).status_code == 422


def test_a_label_becomes_the_final_decision(api: httpx.Client, settings: Settings) -> None:
    answer = api.post("/v1/reviews/r1", headers=auth(REVIEWER),
                      json={"rating": "Safe", "category": "NA", "note": "a kitchen knife"})
    assert answer.status_code == 200, answer.text
    verdict = answer.json()["verdict"]
    assert verdict["decision"] == "allow" and verdict["rating"] == "Unsafe"  # the model's answer beside it
    assert verdict["review"]["reviewer"] == key_id(REVIEWER)
    store = open_store(settings.store_url)
    stored = store.get("r1")
    store.close()
    assert stored is not None and stored.decision == "allow" and stored.review is not None
    assert (stored.review.status, stored.review.rating, stored.review.note) == ("reviewed", "Safe", "a kitchen knife")
    assert api.get("/v1/reviews/r1/image", headers=auth(REVIEWER)).json()["code"] == "image_not_retained"
    pending = api.get("/v1/reviews", headers=auth(REVIEWER)).json()
    assert [item["id"] for item in pending["items"]] == ["r2"]
    reviewed = api.get("/v1/reviews", params={"status": "reviewed"}, headers=auth(REVIEWER)).json()
    assert [item["id"] for item in reviewed["items"]] == ["r1"]
    again = api.post("/v1/reviews/r1", headers=auth(REVIEWER), json={"rating": "Unsafe", "category": "O2"})
    assert again.status_code == 409 and again.json()["code"] == "already_reviewed"


BAD_LABELS = [{"rating": "maybe", "category": "NA"}, {"rating": "Safe", "category": "O42"}, {"rating": "Safe"},
              {"rating": "Safe", "category": "NA", "extra": 1},
              {"rating": "Safe", "category": "NA", "note": "x" * 2001},
              ["Safe"]]


def test_bad_labels_are_problems_and_bodies_are_bounded(api: httpx.Client) -> None:
    for body in BAD_LABELS:
        answer = api.post("/v1/reviews/r2", headers=auth(REVIEWER), json=body)
        assert answer.status_code == 422 and answer.json()["code"] == "request_invalid", (body, answer.text)
    assert api.get("/v1/reviews/r2", headers=auth(REVIEWER)).json()["verdict"]["review"]["status"] == "pending"
    answer = api.post("/v1/reviews/r2", headers={**auth(REVIEWER), "Content-Type": "application/json"},
                      content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert answer.status_code == 413 and answer.headers["content-type"] == PROBLEM
    answer = api.post("/v1/reviews/r2", headers={**auth(REVIEWER), "Content-Type": "application/json"},
                      content=b"not json")
    assert answer.status_code == 400 and answer.json()["code"] == "body_not_json"


def test_the_review_cli_lists_shows_and_labels(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("redis_url", "store_url", "s3_endpoint_url"):
        monkeypatch.setenv(f"LLAVAGUARD_{name.upper()}", str(getattr(settings, name)))
    queued(settings, "c1")
    assert main(["review", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "c1\treview_band\tUnsafe\tO2: Violence, Harm, or Cruelty\tscore=0.620\tdecision=review"]
    assert main(["review", "show", "c1", "--image", str(tmp_path / "c1.jpg")]) == 0
    assert json.loads(capsys.readouterr().out)["review"]["status"] == "pending"
    assert (tmp_path / "c1.jpg").read_bytes() == JPEG
    assert main(["review", "label", "c1", "--rating", "unsafe", "--category", "O2", "--reviewer", "ana"]) == 0
    assert capsys.readouterr().out == "c1: decision=block (model said Unsafe)\n"
    assert main(["review", "label", "c1", "--rating", "Safe", "--category", "NA"]) == 1
    assert "labelled already" in capsys.readouterr().err
    assert main(["review", "label", "c1", "--rating", "maybe", "--category", "NA"]) == 2
    assert main(["review", "show", "nope"]) == 1
    assert main(["review", "list", "--status", "reviewed", "--json"]) == 0
    reviewed = Verdict.model_validate_json(capsys.readouterr().out.splitlines()[0])
    assert reviewed.decision == "block" and reviewed.review is not None and reviewed.review.reviewer == "ana"
