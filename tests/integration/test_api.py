"""The HTTP ingestion API on a real uvicorn server, with real Redis, real workers and the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis

from tests.api_server import API_KEY, poll, running_api
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.categories import category_for_code
from worker.errors import SettingsError
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

PROBLEM = "application/problem+json"
MAX_BYTES = 200_000
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture()
def settings(
    fresh_redis: str, standin: SGLangStandIn, s3_endpoint: str, bucket: str, tmp_path: Path
) -> dict[str, str]:
    return {
        "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "s3_endpoint_url": s3_endpoint, "allowed_networks": "127.0.0.1/32", "allow_http": "true",
        "api_keys": f"other-key,{API_KEY}", "max_image_bytes": str(MAX_BYTES), "s3_allowed_buckets": bucket,
    }


@pytest.fixture()
def api(settings: dict[str, str]) -> Iterator[httpx.Client]:
    with running_api(load_settings(**settings)) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        yield client


def test_enqueue_by_url_upload_and_batch_then_read_verdicts(
    api: httpx.Client, settings: dict[str, str], image_server: LoopbackHTTPServer, bucket: str,
    s3_endpoint: str, tmp_path: Path,
) -> None:
    url = image_server.serve_bytes("/u/1.png", make_image("O4"), "image/png")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key="up/2.png", Body=make_image("O2"))

    created = api.post("/v1/moderations", json={"image_url": url, "metadata": {"post": 1}})
    assert created.status_code == 202
    body = created.json()
    assert body["status"] == "pending" and created.headers["location"] == body["url"] == f"/v1/moderations/{body['id']}"
    assert api.get(body["url"]).json() == {"id": body["id"], "status": "pending"}  # no worker yet

    uploaded = api.post("/v1/moderations", files={"image": ("beer.png", make_image("O6"), "image/png")},
                        data={"non_violating": "O6", "metadata": '{"post": 2}', "priority": "9"})
    assert uploaded.status_code == 202, uploaded.text
    items = [{"image_url": f"s3://{bucket}/up/2.png", "idempotency_key": "upload-2"},
             {"image_url": url, "policy": "llavaguard-v1.2", "non_violating": ["O4"]}]
    batch = api.post("/v1/moderations/batch", json={"items": items})
    assert batch.status_code == 202 and [i["status"] for i in batch.json()["items"]] == ["pending", "pending"]

    with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4):
        by_url, by_upload = poll(api, body["id"]), poll(api, uploaded.json()["id"])
        from_s3, declared = (poll(api, i["id"]) for i in batch.json()["items"])

    assert (by_url["status"], by_url["rating"], by_url["category"]) == ("completed", "Unsafe", category_for_code("O4"))
    assert by_url["metadata"] == {"post": 1} and by_url["image"]["source"] == url
    assert (by_upload["rating"], by_upload["category"], by_upload["metadata"]) == (
        "Safe", category_for_code("O6"), {"post": 2})
    assert by_upload["image"]["source"] is None
    assert (from_s3["rating"], from_s3["image"]["source"]) == ("Unsafe", f"s3://{bucket}/up/2.png")
    assert declared["rating"] == "Safe"

    replay = api.post("/v1/moderations/batch", json={"items": items[:1]})
    expected = {"id": from_s3["id"], "status": "completed", "url": f"/v1/moderations/{from_s3['id']}"}
    assert replay.json()["items"][0] == expected


def test_unknown_ids_are_404_problems(api: httpx.Client) -> None:
    for moderation_id in ("0123456789abcdef0123456789abcdef", "..", "not%20an%20id"):
        response = api.get(f"/v1/moderations/{moderation_id}")
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "not_found"


def test_api_keys_are_required(api: httpx.Client) -> None:
    anonymous = httpx.Client(base_url=str(api.base_url))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"},
                    {"Authorization": f"Bearer {API_KEY}x"}):
        for response in (anonymous.get("/v1/moderations/abc", headers=headers),
                         anonymous.post("/v1/moderations", json={"image_url": "https://a.example/x.png"},
                                        headers=headers)):
            assert response.status_code == 401, headers
            assert response.headers["content-type"] == PROBLEM
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["code"] == "unauthorized"
    other = anonymous.get("/v1/moderations/abc", headers={"Authorization": "Bearer other-key"})
    assert other.status_code == 404  # the other configured key is accepted
    assert anonymous.get("/healthz").status_code == 200  # probes need no key
    assert anonymous.get("/readyz").json() == {"status": "ready", "checks": {"redis": "ok", "store": "ok"}}
    anonymous.close()


@pytest.mark.parametrize(("body", "status", "code", "says"), [
    ({"image_url": "ftp://example.com/a.png"}, 422, "image_url_invalid", "https://"),
    ({"image_url": "file:///etc/passwd"}, 422, "image_url_invalid", "file:///etc/passwd"),
    ({"image_url": "https:///nohost.png"}, 422, "image_url_invalid", "host name"),
    ({"image_url": "https://a.example:65536/x.png"}, 422, "image_url_invalid", "host name"),
    ({"image_url": "s3://bucket-only"}, 422, "image_url_invalid", "s3://bucket/key"),
    ({"image_url": "https://a.example/x.png", "policy": "no-such-policy"}, 422, "policy_unknown", "no-such-policy"),
    ({"image_url": "https://a.example/x.png", "non_violating": ["O10"]}, 422, "category_unknown", "O10"),
    ({"image_url": "https://a.example/x.png", "priority": 12}, 422, "request_invalid", "priority"),
    ({"image_url": "https://a.example/x.png", "imageUrl": "typo"}, 422, "request_invalid", "imageUrl"),
    ({"image_url": "https://a.example/x.png", "callback_url": "gopher://x"}, 422, "callback_url_invalid", "http"),
    ({"image_url": "https://a.example/x.png", "metadata": {"blob": "x" * 70_000}}, 422, "metadata_too_large",
     "metadata"),
    ({"policy": "llavaguard-v1.2"}, 422, "request_invalid", "image_url"),
    ({"items": []}, 422, "request_invalid", "items"),
])
def test_invalid_requests_are_problems_and_enqueue_nothing(
    api: httpx.Client, settings: dict[str, str], body: dict[str, Any], status: int, code: str, says: str
) -> None:
    path = "/v1/moderations/batch" if "items" in body else "/v1/moderations"
    response = api.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == code and problem["status"] == status and says in problem["detail"]
    assert redis.Redis.from_url(settings["redis_url"]).dbsize() == 0


def test_malformed_bodies_uploads_and_batches(api: httpx.Client, settings: dict[str, str]) -> None:
    def problem(response: httpx.Response) -> tuple[int, str]:
        assert response.headers["content-type"] == PROBLEM, response.text
        return response.status_code, response.json()["code"]

    headers = {"Content-Type": "application/json"}
    assert problem(api.post("/v1/moderations", content=b"{nope", headers=headers)) == (400, "body_not_json")
    assert problem(api.post("/v1/moderations", content=b"x", headers={"Content-Type": "text/plain"})) == (
        415, "unsupported_media_type")
    too_big = ("big.png", b"\x89PNG" + b"\0" * MAX_BYTES, "image/png")
    assert problem(api.post("/v1/moderations", files={"image": too_big})) == (422, "image_too_large")
    huge = ("huge.png", b"\0" * (MAX_BYTES + 2_000_000), "image/png")
    assert problem(api.post("/v1/moderations", files={"image": huge})) == (413, "image_too_large")
    assert problem(api.post("/v1/moderations", files={"image": ("e.png", b"", "image/png")})) == (422, "image_empty")
    assert problem(api.post("/v1/moderations", data={"image": "not a file"}, files={"x": ("a", b"1")})) == (
        422, "request_invalid")
    assert problem(api.post("/v1/moderations", files={"image": ("a.png", b"1")}, data={"metadata": "[1]"})) == (
        422, "request_invalid")
    bad_item = {"items": [{"image_url": "https://a.example/1.png"}, {"image_url": "gopher://x"}]}
    response = api.post("/v1/moderations/batch", json=bad_item)
    assert problem(response) == (422, "image_url_invalid") and response.json()["detail"].startswith("items[1]: ")
    many = {"items": [{"image_url": f"https://a.example/{n}.png"} for n in range(1001)]}
    assert problem(api.post("/v1/moderations/batch", json=many)) == (422, "batch_too_large")
    assert problem(api.delete("/v1/moderations/abc")) == (405, "method_not_allowed")
    assert redis.Redis.from_url(settings["redis_url"]).dbsize() == 0


def test_broker_down_means_not_ready_and_503(settings: dict[str, str]) -> None:
    closed = "redis://127.0.0.1:9/0"  # nothing listens on the loopback discard port
    with running_api(load_settings(**{**settings, "redis_url": closed})) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["content-type"] == PROBLEM
        assert ready.json()["checks"] == {"redis": "down", "store": "ok"}
        submitted = client.post("/v1/moderations", json={"image_url": "https://a.example/x.png"})
        assert submitted.status_code == 503 and submitted.json()["code"] == "service_unavailable"
        assert submitted.headers["retry-after"] == "5"
        assert client.get("/healthz").status_code == 200


def test_the_api_never_runs_without_keys(settings: dict[str, str]) -> None:
    from producers.api import create_app

    with pytest.raises(SettingsError, match="LLAVAGUARD_API_KEYS"):
        create_app(load_settings(**{**settings, "api_keys": ""}))
