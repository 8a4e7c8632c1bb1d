"""The API serves the wire schemas and documents every webhook event (OpenAPI 3.1 `webhooks`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from standardwebhooks import Webhook

from producers.schemas_export import DOCUMENTS, file_name
from tests.api_server import API_KEY, running_api
from worker.models import ImageInfo, PolicyRef, Verdict
from worker.notify.events import EVENT_TYPES, event_body
from worker.notify.signing import Signer
from worker.settings import load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def settings_for(tmp_path: Path, redis_url: str, **extra: Any) -> Any:
    return load_settings(redis_url=redis_url, store_url=f"sqlite:///{tmp_path}/v.db", api_keys=API_KEY, **extra)


def test_the_schemas_are_served_public_like_the_docs(tmp_path: Path, redis_url: str) -> None:
    with running_api(settings_for(tmp_path, redis_url)) as url, httpx.Client(base_url=url) as api:
        for name in DOCUMENTS:
            response = api.get(f"/v1/schemas/{name}.json")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/schema+json"
            assert response.json() == json.loads((DOCS / file_name(name)).read_text(encoding="utf-8"))
        assert api.get("/v1/schemas/nothing.json").status_code == 404


def test_without_public_docs_the_schemas_need_a_key(tmp_path: Path, redis_url: str) -> None:
    with running_api(settings_for(tmp_path, redis_url, api_public_docs=False)) as url, \
            httpx.Client(base_url=url) as api:
        assert api.get("/v1/schemas/verdict.json").status_code == 401
        assert api.get("/openapi.json").status_code == 404
        assert api.get("/v1/schemas/verdict.json", headers=AUTH).json()["title"] == "Verdict"


def test_the_openapi_webhooks_describe_every_event_body_and_its_signature(tmp_path: Path, redis_url: str) -> None:
    with running_api(settings_for(tmp_path, redis_url)) as url, httpx.Client(base_url=url) as api:
        document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == set(EVENT_TYPES)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    verdict = Verdict(id="abc", status="failed", policy=PolicyRef(name="llavaguard-v1.2"), image=ImageInfo(),
                      error={"code": "fetch_failed", "message": "404"}, created_at=now, completed_at=now)
    for event in EVENT_TYPES:
        operation = document["webhooks"][event]["post"]
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert all(h["required"] for h in headers.values())
        assert "422" not in operation["responses"] and {"200", "410", "429"} <= set(operation["responses"])
        schema = resolved(document, operation["requestBody"]["content"]["application/json"]["schema"])
        body = json.loads(event_body(event, verdict))  # the bytes the workers really send
        jsonschema.validate(body, schema)
        other = next(e for e in EVENT_TYPES if e != event)
        try:
            jsonschema.validate({**body, "type": other}, schema)
        except jsonschema.ValidationError:
            pass
        else:
            raise AssertionError(f"the {event} schema accepts a {other} body")
    # The documented signature scheme is the one the workers sign with (Standard Webhooks).
    raw = event_body("moderation.unsafe", verdict).encode()
    Webhook(SECRET).verify(raw, Signer.from_secrets([SECRET]).headers("msg_1", raw))


def resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema that can be validated alone: the document's components inlined as `$defs`."""
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    defs = json.loads(json.dumps(document["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/"))
    return {**json.loads(text), "$defs": defs}
