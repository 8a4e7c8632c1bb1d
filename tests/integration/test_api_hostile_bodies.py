"""Hostile request bodies against the real API over HTTP: refused before parsing, nothing enqueued, server fine.

Deep JSON (at the top and inside metadata, JSON and multipart), oversized and over-wide batches, lone
surrogates in any string field, and the public-docs setting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from producers.api.limits import BATCH_ITEM_JSON_BYTES, ITEM_JSON_BYTES, MAX_JSON_DEPTH
from tests.api_server import API_KEY, running_api
from worker.settings import load_settings

PROBLEM = "application/problem+json"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"Content-Type": "application/json"}
URL = "https://a.example/x.png"
DEEP = 100_000


@pytest.fixture()
def settings(fresh_redis: str, tmp_path: Path) -> dict[str, str]:
    return {"redis_url": fresh_redis, "store_url": f"sqlite:///{tmp_path}/v.db", "api_keys": API_KEY}


@pytest.fixture()
def api(settings: dict[str, str]) -> Iterator[httpx.Client]:
    with running_api(load_settings(**settings)) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        yield client


def problem(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == PROBLEM, response.text[:300]
    body = response.json()
    assert body["status"] == response.status_code
    return response.status_code, body["code"]


def enqueued(settings: dict[str, str]) -> int:
    return int(redis.Redis.from_url(settings["redis_url"]).dbsize())


def nested(levels: int, inner: str = "1") -> str:
    """`levels` JSON objects, one inside the other."""
    return '{"a":' * levels + inner + "}" * levels


def assert_still_serving(api: httpx.Client) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.post("/v1/moderations", json={"image_url": URL}).status_code == 202


def test_deep_json_is_refused_before_parsing(api: httpx.Client, settings: dict[str, str]) -> None:
    arrays = ("[" * DEEP + "]" * DEEP).encode()
    in_batch = f'{{"items":[{{"image_url":"{URL}","metadata":{nested(DEEP)}}}]}}'.encode()
    # A single moderation's body is capped near 80 KiB: as deep as fits in it.
    small = ("[" * 30_000 + "]" * 30_000).encode()
    unclosed = ("[" * 60_000).encode()
    in_metadata = f'{{"image_url":"{URL}","metadata":{{"a":{nested(10_000)}}}}}'.encode()
    for path, body in [("/v1/moderations/batch", arrays), ("/v1/moderations/batch", in_batch),
                       ("/v1/moderations", small), ("/v1/moderations", unclosed),
                       ("/v1/moderations", in_metadata)]:
        response = api.post(path, content=body, headers=JSON)
        assert problem(response) == (400, "body_too_deep"), (path, body[:40])
    assert problem(api.post("/v1/moderations", content=arrays, headers=JSON)) == (413, "body_too_large")
    form = api.post("/v1/moderations", files={"image": ("a.png", b"\x89PNG", "image/png")},
                    data={"metadata": f'{{"a":{nested(DEEP)}}}'})
    assert problem(form) == (400, "body_too_deep")
    assert enqueued(settings) == 0
    assert_still_serving(api)


def test_the_depth_limit_is_exact_and_brackets_in_strings_do_not_count(
    api: httpx.Client, settings: dict[str, str]
) -> None:
    tricky = '"[[[{{{\\"\\\\[[["'  # brackets, an escaped quote and an escaped backslash inside one string
    deepest = nested(MAX_JSON_DEPTH - 1, tricky)  # the body is the first level, metadata the second
    allowed = f'{{"image_url":"{URL}","metadata":{deepest}}}'
    response = api.post("/v1/moderations", content=allowed.encode(), headers=JSON)
    assert response.status_code == 202, response.text
    too_deep = f'{{"image_url":"{URL}","metadata":{nested(MAX_JSON_DEPTH, tricky)}}}'
    assert problem(api.post("/v1/moderations", content=too_deep.encode(), headers=JSON)) == (400, "body_too_deep")
    as_field = api.post("/v1/moderations", files={"image": ("a.png", b"\x89PNG", "image/png")},
                        data={"metadata": nested(MAX_JSON_DEPTH + 1)})
    assert problem(as_field) == (400, "body_too_deep")


def test_batches_over_the_item_or_byte_limit_are_refused_unparsed(
    api: httpx.Client, settings: dict[str, str]
) -> None:
    item = {"image_url": "https://a.example/0123456789.png"}
    huge = json.dumps({"items": [item] * 650_000}).encode()
    assert len(huge) > 20_000_000
    started = time.monotonic()
    response = api.post("/v1/moderations/batch", content=huge, headers=JSON)
    took_huge = time.monotonic() - started
    assert problem(response) == (413, "body_too_large")

    wide = json.dumps({"items": [item] * 300_000}).encode()  # under the byte cap, 300x the item limit
    assert len(wide) < 1000 * BATCH_ITEM_JSON_BYTES
    started = time.monotonic()
    response = api.post("/v1/moderations/batch", content=wide, headers=JSON)
    took_wide = time.monotonic() - started
    assert problem(response) == (422, "batch_too_large")
    print(f"\n650k items ({len(huge)} B): {took_huge:.2f} s; 300k items ({len(wide)} B): {took_wide:.2f} s")

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"items":['
        for _ in range(3000):
            yield b'{"image_url":"' + URL.encode() + b'","metadata":{"pad":"' + b"x" * 8000 + b'"}},'
        yield b"]}"

    assert problem(api.post("/v1/moderations/batch", content=chunked(), headers=JSON)) == (413, "body_too_large")
    one_too_many = {"items": [item] * 1001}
    assert problem(api.post("/v1/moderations/batch", json=one_too_many)) == (422, "batch_too_large")
    assert enqueued(settings) == 0
    exactly = api.post("/v1/moderations/batch", json={"items": [{"image_url": f"{URL}?{n}"} for n in range(1000)]})
    assert exactly.status_code == 202 and len(exactly.json()["items"]) == 1000


def test_a_single_moderation_body_has_its_own_cap(api: httpx.Client, settings: dict[str, str]) -> None:
    padded = json.dumps({"image_url": URL, "metadata": {"a": "x" * ITEM_JSON_BYTES}}).encode()
    assert problem(api.post("/v1/moderations", content=padded, headers=JSON)) == (413, "body_too_large")
    assert enqueued(settings) == 0
    assert_still_serving(api)


def body_with(fields: str, url: str = URL) -> str:
    """A JSON moderation written by hand, so that its escapes reach the server exactly as written."""
    return '{"image_url":"' + url + '"' + fields + "}"


LONE = [
    (body_with(',"metadata":{"a":"\\udc80"}'), "metadata.a"),
    (body_with(',"metadata":{"\\ud800":1}'), "metadata.\\ud800"),  # shown escaped
    (body_with(',"metadata":{"a":["ok",{"b":"x\\udfffy"}]}'), "metadata.a.1.b"),
    (body_with(',"idempotency_key":"k\\udc80"'), "idempotency_key"),
    (body_with("", url=URL + "/\\ud83d"), "image_url"),
    (body_with(',"callback_url":"https://cb.example/\\udc80"'), "callback_url"),
]


@pytest.mark.parametrize(("body", "where"), LONE)
def test_lone_surrogates_are_refused_at_submit(
    api: httpx.Client, settings: dict[str, str], body: str, where: str
) -> None:
    response = api.post("/v1/moderations", content=body.encode(), headers=JSON)
    assert problem(response) == (422, "request_invalid")
    assert response.json()["detail"].startswith(f"{where}: ")
    batch = '{"items":[' + body_with("") + "," + body + "]}"
    assert problem(api.post("/v1/moderations/batch", content=batch.encode(), headers=JSON)) == (
        422, "request_invalid")
    assert enqueued(settings) == 0


def test_surrogates_in_raw_bytes_and_multipart_fields_are_refused(api: httpx.Client, settings: dict[str, str]) -> None:
    raw = body_with(',"metadata":{"a":"\udc80"}').encode("utf-8", "surrogatepass")  # U+DC80 as raw bytes
    assert problem(api.post("/v1/moderations", content=raw, headers=JSON)) == (422, "request_invalid")
    image = ("a.png", b"\x89PNG", "image/png")
    for field in ({"metadata": '{"a": "\\udc80"}'}, {"metadata": '{"\\udbff": "x"}'}):
        response = api.post("/v1/moderations", files={"image": image}, data=field)
        assert problem(response) == (422, "request_invalid"), field
        assert "surrogate" in response.json()["detail"]
    assert enqueued(settings) == 0
    paired = api.post("/v1/moderations", content=body_with(',"metadata":{"a":"\\ud83d\\ude00"}').encode(),
                      headers=JSON)
    assert paired.status_code == 202  # a surrogate pair is one character (U+1F600), not a lone surrogate


@pytest.mark.parametrize("public", [True, False])
def test_the_docs_are_public_only_when_the_setting_says_so(settings: dict[str, str], public: bool) -> None:
    configured = load_settings(**settings, api_public_docs=str(public).lower())
    with running_api(configured) as url, httpx.Client(base_url=url) as anonymous:
        for path in ("/docs", "/redoc", "/openapi.json"):
            response = anonymous.get(path)
            if public:
                assert response.status_code == 200, path
            else:
                assert problem(response) == (404, "not_found"), path
        assert anonymous.get("/healthz").status_code == 200
        submitted = anonymous.post("/v1/moderations", json={"image_url": URL}, headers=AUTH)
        assert submitted.status_code == 202


def test_json_is_utf8_only(api: httpx.Client, settings: dict[str, str]) -> None:
    """UTF-16 would let a code unit's byte pass for a quote and hide brackets from the depth scan."""
    body = body_with(',"metadata":{"a":"\u2222"}').encode("utf-16")
    assert problem(api.post("/v1/moderations", content=body, headers=JSON)) == (400, "body_not_json")
    assert enqueued(settings) == 0
