"""The S3 store's answers to servers moto does not imitate: no conditional writes (501), and the 409 S3
returns while another conditional write to the same key is in flight. botocore's Stubber plays the server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from worker.errors import StoreUnavailable
from worker.models import ErrorInfo, ImageInfo, PolicyRef, Verdict
from worker.stores.s3 import S3VerdictStore
from worker.stores.s3_layout import entry_key

VERDICT = Verdict(
    id="v1", status="failed", policy=PolicyRef(name="p"), image=ImageInfo(),
    error=ErrorInfo(code="image_empty", message="empty"),
    created_at=datetime(2024, 1, 1, tzinfo=UTC), completed_at=datetime(2024, 1, 1, tzinfo=UTC),
)
ID_KEY, ENTRY_KEY = "verdicts/by-id/v1.json", entry_key("verdicts/", VERDICT)
PUT = {"Bucket": "b", "Key": ID_KEY, "Body": ANY, "ContentType": "application/json"}
CONDITIONAL_PUT = {**PUT, "IfNoneMatch": "*"}
ENTRY_PUT = {**PUT, "Key": ENTRY_KEY}
LEGACY_LIST = {"Bucket": "b", "Prefix": "verdicts/", "Delimiter": "/"}


@pytest.fixture()
def stubbed() -> Iterator[tuple[S3VerdictStore, Stubber]]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    with stubber:
        store = S3VerdictStore("b", "", client)
        stubber.add_response("list_objects_v2", {"KeyCount": 0}, LEGACY_LIST)  # asked once: no legacy objects
        yield store, stubber
        store.close()
    stubber.assert_no_pending_responses()


def _error(stubber: Stubber, method: str, code: str, status: int, params: dict[str, Any]) -> None:
    stubber.add_client_error(method, service_error_code=code, http_status_code=status, expected_params=params)


def test_a_server_without_conditional_writes_falls_back_to_head_then_put(
    stubbed: tuple[S3VerdictStore, Stubber],
) -> None:
    store, stubber = stubbed
    _error(stubber, "put_object", "NotImplemented", 501, CONDITIONAL_PUT)
    _error(stubber, "head_object", "404", 404, {"Bucket": "b", "Key": ID_KEY})
    stubber.add_response("put_object", {}, PUT)
    _error(stubber, "head_object", "404", 404, {"Bucket": "b", "Key": ENTRY_KEY})
    stubber.add_response("put_object", {}, ENTRY_PUT)
    assert store.save(VERDICT) is True
    stubber.add_response("head_object", {}, {"Bucket": "b", "Key": ID_KEY})
    _stored(stubber)
    stubber.add_response("head_object", {}, {"Bucket": "b", "Key": ENTRY_KEY})
    assert store.save(VERDICT) is False  # no second conditional attempt: it went straight to HEAD


def _stored(stubber: Stubber) -> None:
    body = VERDICT.model_dump_json().encode()
    stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(body), len(body))},
                         {"Bucket": "b", "Key": ID_KEY})


def test_a_conflicting_conditional_write_is_retried(stubbed: tuple[S3VerdictStore, Stubber]) -> None:
    store, stubber = stubbed
    _error(stubber, "put_object", "ConditionalRequestConflict", 409, CONDITIONAL_PUT)
    _error(stubber, "put_object", "PreconditionFailed", 412, CONDITIONAL_PUT)
    _stored(stubber)  # the loser makes sure the winner's partition copy exists
    _error(stubber, "put_object", "PreconditionFailed", 412, {**ENTRY_PUT, "IfNoneMatch": "*"})
    assert store.save(VERDICT) is False


def test_other_errors_are_store_unavailable(stubbed: tuple[S3VerdictStore, Stubber]) -> None:
    store, stubber = stubbed
    _error(stubber, "put_object", "SlowDown", 503, CONDITIONAL_PUT)
    with pytest.raises(StoreUnavailable, match="SlowDown"):
        store.save(VERDICT)
