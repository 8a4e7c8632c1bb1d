"""What a producer or receiver in any language reads from the API: the wire schemas and the webhook events.

`/v1/schemas/moderation-request.json` and `/v1/schemas/verdict.json` serve the JSON Schemas generated from
the models (`producers.schemas_export`, committed under docs/schemas/); they are public when
LLAVAGUARD_API_PUBLIC_DOCS is on (like /openapi.json, they describe the API, never a key or a verdict),
else they need an API key. The OpenAPI document's `webhooks` section (OpenAPI 3.1) describes every event
the workers POST (`worker.notify.events`) and its Standard Webhooks signature headers; those operations are
documentation only: nothing here receives a webhook.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, params
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from producers.schemas_export import DOCUMENTS, SCHEMA_PATH, schema_of
from worker.models import Verdict
from worker.notify import events

SCHEMA_MEDIA_TYPE = "application/schema+json"
_TIMESTAMP = "When the verdict was reached (its `completed_at`)."
_DATA = "The verdict, as `GET /v1/moderations/{id}` returns it."


class UnsafeEvent(BaseModel):
    """Sent for every verdict rated Unsafe, always."""

    type: Literal["moderation.unsafe"]
    timestamp: datetime = Field(description=_TIMESTAMP)
    data: Verdict = Field(description=_DATA)


class CompletedEvent(BaseModel):
    """Sent for every completed verdict (Safe or Unsafe) when LLAVAGUARD_WEBHOOK_EVENTS lists it."""

    type: Literal["moderation.completed"]
    timestamp: datetime = Field(description=_TIMESTAMP)
    data: Verdict = Field(description=_DATA)


class FailedEvent(BaseModel):
    """Sent for every failed moderation when LLAVAGUARD_WEBHOOK_EVENTS lists it."""

    type: Literal["moderation.failed"]
    timestamp: datetime = Field(description=_TIMESTAMP)
    data: Verdict = Field(description=_DATA)


class ReviewRequestedEvent(BaseModel):
    """Sent to the configured endpoints when a verdict enters the human review queue (`data.review` pending)."""

    type: Literal["moderation.review_requested"]
    timestamp: datetime = Field(description="When the review was requested.")
    data: Verdict = Field(description=_DATA)


class ReviewedEvent(BaseModel):
    """Sent to the configured endpoints when a reviewer labels a verdict: `data.decision` is the human's."""

    type: Literal["moderation.reviewed"]
    timestamp: datetime = Field(description="When the label was recorded.")
    data: Verdict = Field(description=_DATA)


class BankMatchEvent(BaseModel):
    """Sent for every verdict a hash bank decided (`data.match.kind == "bank"`): block (also `moderation.unsafe`)
    or allow; no model was asked."""

    type: Literal["moderation.bank_match"]
    timestamp: datetime = Field(description=_TIMESTAMP)
    data: Verdict = Field(description=_DATA)


EVENT_BODIES: dict[str, type[BaseModel]] = {
    events.UNSAFE: UnsafeEvent, events.COMPLETED: CompletedEvent, events.FAILED: FailedEvent,
    events.REVIEW_REQUESTED: ReviewRequestedEvent, events.REVIEWED: ReviewedEvent,
    events.BANK_MATCH: BankMatchEvent,
}
"""One body per event type in `worker.notify.events.EVENT_TYPES` (a test keeps them equal)."""

WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Delivered (any 2xx): the same `webhook-id` is not sent again."},
    "3XX": {"description": "A failure: redirects are never followed; retried on the delivery schedule."},
    410: {"description": "Gone: the endpoint is disabled, no later event is sent to it."},
    429: {"description": "Busy: retried later, honouring `Retry-After`."},
    "5XX": {"description": "Failed: retried on the delivery schedule (LLAVAGUARD_WEBHOOK_RETRY_SCHEDULE_S)."},
}

WebhookId = Annotated[str, Header(description="The delivery's id (`msg_…`): the same on every retry; "
                                              "de-duplicate by it.")]
WebhookTimestamp = Annotated[int, Header(description="Unix seconds of this attempt; refuse it beyond 5 minutes' "
                                                     "skew.")]
WebhookSignature = Annotated[str, Header(
    description="Space-separated `v1,<base64>` entries: HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` "
                "(the exact bytes) with the secret's base64-decoded part after `whsec_` (LLAVAGUARD_WEBHOOK_SECRET "
                "for configured endpoints, the owner's callback secret for a request's callback_url). One entry "
                "per secret, for rotation: accept the request when any entry matches.")]


def _webhook(model: type[BaseModel]) -> Callable[..., Awaitable[None]]:
    async def receive(event: BaseModel, webhook_id: WebhookId, webhook_timestamp: WebhookTimestamp,
                      webhook_signature: WebhookSignature) -> None:
        """Documentation only: what the workers POST to a webhook receiver."""

    receive.__annotations__["event"] = model  # the body's schema is this event's, not any BaseModel
    return receive


def document_webhooks(app: FastAPI) -> None:
    """Add every event type to the OpenAPI `webhooks` section, with its body and signature headers."""
    for name, model in EVENT_BODIES.items():
        app.webhooks.add_api_route(name, _webhook(model), methods=["POST"], summary=f"The `{name}` event",
                                   description=(model.__doc__ or "").strip(), responses=WEBHOOK_RESPONSES,
                                   tags=["webhooks"])
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for item in document.get("webhooks", {}).values():
            item["post"]["responses"].pop("422", None)  # FastAPI's own validation answer: no receiver sends it
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _serve(name: str) -> Callable[[], Awaitable[JSONResponse]]:
    document = schema_of(name)

    async def serve() -> JSONResponse:
        return JSONResponse(document, media_type=SCHEMA_MEDIA_TYPE)

    return serve


def schemas_router(dependencies: Sequence[params.Depends]) -> APIRouter:
    """The wire schemas at their stable paths; `dependencies` is the API-key check, or nothing when public."""
    api = APIRouter(tags=["schemas"], dependencies=list(dependencies))
    for name in DOCUMENTS:
        api.add_api_route(f"{SCHEMA_PATH}/{name}.json", _serve(name), methods=["GET"],
                          summary=f"The JSON Schema of a {name.replace('-', ' ')} (docs/wire-contract.md)",
                          responses={200: {"content": {SCHEMA_MEDIA_TYPE: {"schema": {"type": "object"}}}}},
                          response_class=JSONResponse)
    return api
