"""Schemathesis against the live server's /openapi.json: every documented operation, generated requests.

No worker runs here, so nothing generated is ever fetched (generated URLs name hosts that must never be
contacted); the checks are about the API itself: no server errors, documented status codes, content types
and response schemas, valid requests accepted, and requests without a valid key refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.api_server import API_KEY, running_api
from worker.settings import load_settings

AUTH = {"Authorization": f"Bearer {API_KEY}"}
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def live_schema(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Any]:
    folder: Path = tmp_path_factory.mktemp("api-schema")
    configured = load_settings(redis_url=redis_url, store_url=f"sqlite:///{folder}/v.db", api_keys=API_KEY,
                               max_image_bytes=100_000)
    with running_api(configured) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


def short_wait(case: Any) -> Any:
    if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int | float):
        case.query["wait"] = min(case.query["wait"], 0.05)
    return case


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_describes_every_route(live_schema: Any) -> None:
    found = {(op.method.upper(), op.path) for op in operations(live_schema)}
    assert found == {("POST", "/v1/moderations"), ("POST", "/v1/moderations/batch"),
                     ("GET", "/v1/moderations/{moderation_id}"), ("GET", "/healthz"), ("GET", "/readyz"),
                     ("GET", "/v1/callback-secret"), ("GET", "/v1/schemas/moderation-request.json"),
                     ("GET", "/v1/schemas/verdict.json"), ("GET", "/v1/reviews"), ("GET", "/v1/reviews/{review_id}"),
                     ("GET", "/v1/reviews/{review_id}/image"), ("POST", "/v1/reviews/{review_id}")}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_behaves_as_its_openapi_document_says(live_schema: Any, mode: GenerationMode) -> None:
    for operation in operations(live_schema):
        takes_input = operation.path.startswith("/v1/") and not operation.path.startswith("/v1/schemas/")
        if mode == GenerationMode.NEGATIVE and not takes_input:
            continue  # the probes and schemas take no input: there is nothing invalid to send them

        strategy = operation.as_strategy(generation_mode=mode)
        if mode == GenerationMode.NEGATIVE:  # negative multipart is unsound: an "array" field may be no part at all
            strategy = strategy.filter(lambda case: case.media_type in (None, "application/json"))
        else:  # no worker runs: a valid `?wait=` always waits to its end, so keep it short
            strategy = strategy.map(short_wait)

        @given(case=strategy)
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case: Any) -> None:
            case.call_and_validate(headers=AUTH)

        check()
