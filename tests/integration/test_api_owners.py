"""Issue 8 items 5 and 10 over HTTP: idempotency scoped per API key, unguessable ids, 409 on a conflicting
reuse, verdicts private to the key that submitted them (or an admin key), callbacks signed per owner.

Real uvicorn API, real Redis, real worker processes, the stand-in, loopback image and webhook servers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests import services
from tests.api_server import poll, running_api
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from tests.webhook_receiver import WebhookReceiver, wait_until
from worker.categories import category_for_code
from worker.notify.signing import new_secret
from worker.owners import key_id
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

PROBLEM = "application/problem+json"
KEY_A, KEY_B, ADMIN = "key-a-0123456789", "key-b-0123456789", "admin-0123456789"
OLD_NAMESPACE = uuid.UUID("8d3f6c1e-5a0b-4c55-9a43-2f7d61c0b9e4")
"""The idempotency namespace that was written in the source before: ids were uuid5(it, key)."""


def base_settings(redis_url: str, sglang_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "redis_url": redis_url, "sglang_url": sglang_url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "allowed_networks": "127.0.0.1/32", "allow_http": "true", "api_keys": f"{KEY_A},{KEY_B}",
        "api_admin_keys": ADMIN, "webhook_poll_interval_s": "0.1", **extra,
    }


@pytest.fixture()
def settings(fresh_redis: str, standin: SGLangStandIn, tmp_path: Path) -> dict[str, str]:
    return base_settings(fresh_redis, standin.url, tmp_path)


@pytest.fixture()
def base_url(settings: dict[str, str]) -> Iterator[str]:
    with running_api(load_settings(**settings)) as url:
        yield url


_opened: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def client(base_url: str, key: str) -> httpx.Client:
    opened = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    _opened.append(opened)
    return opened


def test_the_same_idempotency_key_from_two_api_keys_gives_two_private_moderations(
    base_url: str, settings: dict[str, str], standin: SGLangStandIn, image_server: LoopbackHTTPServer,
    tmp_path: Path,
) -> None:
    """The issue's attack: B submits a benign image as `upload-123`, A an unsafe one under the same key."""
    benign = image_server.serve_bytes("/b.png", make_image("NA"), "image/png")
    unsafe = image_server.serve_bytes("/a.png", make_image("O4"), "image/png")
    a, b, admin = client(base_url, KEY_A), client(base_url, KEY_B), client(base_url, ADMIN)
    first_b = b.post("/v1/moderations", json={"image_url": benign, "idempotency_key": "upload-123"}).json()
    first_a = a.post("/v1/moderations", json={"image_url": unsafe, "idempotency_key": "upload-123"}).json()
    assert first_a["id"] != first_b["id"] and first_a["status"] == first_b["status"] == "pending"
    assert uuid.uuid5(OLD_NAMESPACE, "upload-123").hex not in {first_a["id"], first_b["id"]}

    again = a.post("/v1/moderations", json={"image_url": unsafe, "idempotency_key": "upload-123"})
    assert again.status_code == 202 and again.json()["id"] == first_a["id"]  # the same request: the same id
    assert (b.get(first_a["url"]).status_code, admin.get(first_a["url"]).json()["status"]) == (404, "pending")

    with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4):
        mine_a, mine_b = poll(a, first_a["id"]), poll(b, first_b["id"])
    assert (mine_a["rating"], mine_a["category"], mine_a["image"]["source"]) == (
        "Unsafe", category_for_code("O4"), unsafe)
    assert (mine_b["rating"], mine_b["image"]["source"]) == ("Safe", benign)
    assert (mine_a["owner"], mine_b["owner"]) == (key_id(KEY_A), key_id(KEY_B))

    for reader, other in ((a, first_b), (b, first_a)):  # another key's verdict does not exist for you
        hidden = reader.get(other["url"])
        assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
        assert hidden.headers["content-type"] == PROBLEM
    assert admin.get(first_a["url"]).json() == mine_a and admin.get(first_b["url"]).json() == mine_b
    assert standin.stats()["total_requests"] == 2


@pytest.mark.parametrize("changed", [
    {"image_url": "OTHER"}, {"metadata": {"post": 2}}, {"policy": None, "non_violating": ["O6"]},
    {"callback_url": "https://cb.example/x"}, {"priority": 9},
])
def test_a_conflicting_reuse_of_an_idempotency_key_is_409_and_enqueues_nothing(
    base_url: str, settings: dict[str, str], changed: dict[str, Any]
) -> None:
    a = client(base_url, KEY_A)
    original = {"image_url": "https://img.example/1.png", "metadata": {"post": 1}, "idempotency_key": "k"}
    first = a.post("/v1/moderations", json=original)
    assert first.status_code == 202
    reused = {**original, **changed}
    if reused["image_url"] == "OTHER":
        reused["image_url"] = "https://img.example/2.png"
    conflict = a.post("/v1/moderations", json=reused)
    assert conflict.status_code == 409 and conflict.headers["content-type"] == PROBLEM
    assert conflict.json()["code"] == "idempotency_conflict"
    batch = a.post("/v1/moderations/batch", json={"items": [{"image_url": "https://img.example/3.png"}, reused]})
    assert batch.status_code == 409 and batch.json()["detail"].startswith("items[1]: ")
    upload = a.post("/v1/moderations", files={"image": ("x.png", make_image("O1"), "image/png")},
                    data={"idempotency_key": "k", "metadata": '{"post": 1}'})
    assert upload.status_code == 409  # the same key with an uploaded image instead of the URL
    assert a.post("/v1/moderations", json=original).json()["id"] == first.json()["id"]
    with redis.Redis.from_url(settings["redis_url"]) as broker:
        assert broker.llen("realtime") == 1, "only the first request was enqueued; the refused ones left nothing"


def test_two_deployments_give_different_ids_for_the_same_key(
    settings: dict[str, str], tmp_path: Path
) -> None:
    ids = []
    for n in range(2):
        (tmp_path / f"redis-{n}").mkdir()
        with services.redis_server(tmp_path / f"redis-{n}") as redis_url, \
                running_api(load_settings(**{**settings, "redis_url": redis_url})) as url:
            created = client(url, KEY_A).post("/v1/moderations", json={
                "image_url": "https://img.example/1.png", "idempotency_key": "upload-123"})
            ids.append(created.json()["id"])
    assert ids[0] != ids[1] and len(ids[0]) == 32


@pytest.mark.parametrize("callback_master", ["", new_secret()], ids=["derived-from-webhook-secret", "own-master"])
def test_callbacks_are_signed_with_the_owners_secret_never_the_operators(
    callback_master: str, fresh_redis: str, standin: SGLangStandIn, tmp_path: Path
) -> None:
    operator_secret = new_secret()
    operator, callback = WebhookReceiver(), WebhookReceiver()
    settings = base_settings(fresh_redis, standin.url, tmp_path, webhook_url=operator.url(),
                             webhook_secret=operator_secret, callback_secret=callback_master)
    try:
        with running_api(load_settings(**settings)) as url:
            a, b = client(url, KEY_A), client(url, KEY_B)
            secret_a, secret_b = a.get("/v1/callback-secret").json(), b.get("/v1/callback-secret").json()
            upload = a.post("/v1/moderations", files={"image": ("u.png", make_image("O2"), "image/png")},
                            data={"callback_url": callback.url("/cb")})
            with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4,
                                 queues="realtime,bulk,webhooks"):
                verdict = poll(a, upload.json()["id"])
                wait_until(lambda: len(callback.accepted()) == 1 and len(operator.accepted()) == 1, 60,
                           "the callback and the operator's delivery of the unsafe verdict")
    finally:
        operator.close()
        callback.close()
    assert verdict["rating"] == "Unsafe"
    assert secret_a["key_id"] == key_id(KEY_A) and secret_a["secret"] not in {secret_b["secret"], operator_secret}
    (delivered,) = [r for r in callback.snapshot() if r.status == 200]
    assert Webhook(secret_a["secret"]).verify(delivered.body, delivered.headers)["data"]["id"] == verdict["id"]
    for wrong in (operator_secret, secret_b["secret"]):
        with pytest.raises(WebhookVerificationError):
            Webhook(wrong).verify(delivered.body, delivered.headers)
    (to_operator,) = [r for r in operator.snapshot() if r.status == 200]
    assert Webhook(operator_secret).verify(to_operator.body, to_operator.headers)["data"]["id"] == verdict["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_a["secret"]).verify(to_operator.body, to_operator.headers)
    cli = subprocess.run([sys.executable, "-m", "producers.cli", "webhooks", "callback-secret", "--key-id",
                          key_id(KEY_A)], env=worker_env(**settings), capture_output=True, text=True,
                         timeout=60, check=True)
    assert json.loads(cli.stdout)["secret"] == secret_a["secret"]  # the operator can hand it out too
