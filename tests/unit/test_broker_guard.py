"""The broker guard refuses every poison shape with its reason, and passes a real Celery message unchanged."""

from __future__ import annotations

import base64
import json

import pytest

from tests.integration.test_poison_messages import APPLICATION_DATA, celery_message
from worker.batch import placeholder_request
from worker.broker.guard import Rejection, inspect
from worker.models import ModerationRequest
from worker.queues import KNOWN_TASKS, MODERATE_TASK

LIMIT = 10_000


def check(raw: bytes) -> dict[str, object] | Rejection:
    return inspect(raw, max_bytes=LIMIT, known_tasks=KNOWN_TASKS)


def with_envelope(**changes: object) -> bytes:
    envelope = json.loads(celery_message(MODERATE_TASK, [{"id": "a"}]))
    envelope.update(changes)
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(("raw", "reason"), [
    (b"garbage", "not_json"),
    (b"\xff\xfe", "not_json"),
    (b"[1, 2]", "not_json"),
    (b"[" * 100_000, "too_large"),
    (b"[" * 5_000 + b"]" * 5_000, "not_json"),
    (APPLICATION_DATA.encode(), "content_type"),
    (with_envelope(**{"content-encoding": "binary"}), "content_type"),
    (celery_message(MODERATE_TASK, [], headers={"compression": "application/x-gzip"}), "compressed"),
    (celery_message(MODERATE_TASK, [], body=b'{"not": "a list"}'), "body_invalid"),
    (celery_message(MODERATE_TASK, [], body=b"\xff"), "body_invalid"),
    (with_envelope(properties={}), "body_invalid"),
    (with_envelope(headers={"task": MODERATE_TASK}), "body_invalid"),
    (celery_message("celery.backend_cleanup", []), "unknown_task"),
])
def test_poison_is_refused_with_its_reason(raw: bytes, reason: str) -> None:
    result = check(raw)
    assert isinstance(result, Rejection) and result.reason == reason, result


def test_a_celery_message_passes_and_an_unknown_task_keeps_its_readable_body() -> None:
    assert isinstance(check(celery_message(MODERATE_TASK, [{"id": "a"}])), dict)
    refused = check(celery_message("nope", [{"id": "a"}]))
    assert isinstance(refused, Rejection) and refused.body == [[{"id": "a"}], {}, {}]
    compressed = check(celery_message(MODERATE_TASK, [{"id": "a"}], headers={"compression": "zlib"}))
    assert isinstance(compressed, Rejection) and compressed.body is None


@pytest.mark.parametrize("payload", [
    {"id": "a", "image": {"url": "https://x/\udc80"}},
    {"id": "a", "image": {"url": "https://x/y"}, "metadata": {"deep": [{"k": "\ud800"}]}},
    {"id": "a", "image": {"url": "https://x/y"}, "metadata": {"\udc80": 1}},
    {"id": "a\udc80", "image": {"url": "https://x/y"}},
])
def test_lone_surrogates_anywhere_are_invalid(payload: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        ModerationRequest.model_validate(payload)


def test_the_placeholder_of_a_bad_request_is_storable_or_absent() -> None:
    placeholder = placeholder_request({"id": "a", "metadata": {"k": "\udc80", "n": [1]}})
    assert placeholder is not None and placeholder.metadata == {"k": "?", "n": [1]}
    json.dumps(placeholder.model_dump(mode="json")).encode("utf-8")
    assert placeholder_request({"id": "x" * 129}) is None
    assert placeholder_request("garbage") is None
    assert placeholder_request({"id": 5}) is None


def test_the_body_is_base64_json_of_args_kwargs_embed() -> None:
    body = json.loads(celery_message(MODERATE_TASK, [1]))["body"]
    assert json.loads(base64.b64decode(body)) == [[1], {}, {}]
