"""The endpoints: a thin HTTP layer over the SDK (`AsyncModerationClient`); no moderation logic lives here.

A moderation id is `pending` while its enqueued marker exists and no verdict is stored, then the verdict
(`completed` or `failed`); an id with neither is unknown (404). What a key submits is owned by its key id:
only that key (or an admin key) reads it; to any other key it is unknown too (404, never 403).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from producers.api.auth import caller_of
from producers.api.limits import MAX_JSON_DEPTH
from producers.api.problems import ApiProblem, invalid_request, problem_responses
from producers.api.schemas import (
    UPLOAD_ENCODING,
    Accepted,
    BatchAccepted,
    BatchCreate,
    ModerationCreate,
    ModerationOptions,
    Pending,
    batch_schema,
    moderation_schema,
    upload_schema,
)
from producers.api.validation import Rules, shallow_json, unicode_only
from producers.async_client import AsyncModerationClient
from producers.client import Submission
from producers.verdict_waits import MAX_WAIT_S
from worker.errors import IdempotencyConflict
from worker.models import Verdict

PREFIX = "/v1/moderations"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
M = TypeVar("M", bound=BaseModel)
WAIT_DOC = (f"Seconds (at most {MAX_WAIT_S:g}) to wait for the verdict: 200 with it if stored in time, else 202. "
            "The worker wakes the request when it stores the verdict.")
_FORM_FIELDS = ("policy", "non_violating", "callback_url", "metadata", "idempotency_key", "priority")


def client_of(request: Request) -> AsyncModerationClient:
    client: AsyncModerationClient = request.app.state.client
    return client


def rules_of(request: Request) -> Rules:
    rules: Rules = request.app.state.rules
    return rules


async def create_one(
    request: Request, response: Response,
    wait: Annotated[float | None, Query(gt=0, le=MAX_WAIT_S, description=WAIT_DOC)] = None,
) -> Accepted | JSONResponse:
    """POST /v1/moderations: a JSON body with `image_url`, or a multipart upload with an `image` file.

    With `?wait=SECONDS`: 200 with the verdict if it is stored within that time, else 202 as without."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        submission = await _from_form(request)
    elif media_type == "application/json":
        body = _validated(ModerationCreate, await _json(request))
        submission = rules_of(request).submission(body, body.image_url)
    else:
        raise ApiProblem(415, "unsupported_media_type", "send application/json or multipart/form-data")
    accepted = (await _submit(request, [submission]))[0]
    response.headers["Location"] = accepted.url
    if wait is not None:
        verdict = await client_of(request).wait_for(accepted.id, wait)
        if verdict is not None:
            return JSONResponse(verdict.model_dump(mode="json"), headers={"Location": accepted.url})
    return accepted


async def create_batch(request: Request) -> BatchAccepted:
    """POST /v1/moderations/batch: `{"items": [...]}`, each item as the JSON body of POST /v1/moderations."""
    batch = _validated(BatchCreate, await _json(request))
    limit = request.app.state.settings.api_max_batch_items
    if len(batch.items) > limit:
        raise ApiProblem(422, "batch_too_large", f"a batch holds at most {limit} items, got {len(batch.items)}")
    rules = rules_of(request)
    submissions = []
    for index, item in enumerate(batch.items):
        try:
            submissions.append(rules.submission(item, item.image_url))
        except ApiProblem as exc:
            exc.detail = f"items[{index}]: {exc.detail}"
            raise
    return BatchAccepted(items=await _submit(request, submissions))


async def read_one(request: Request, moderation_id: str) -> Verdict | Pending:
    """GET /v1/moderations/{id}: the verdict, `pending`, or 404."""
    if not _ID.match(moderation_id):
        raise ApiProblem(404, "not_found", "no moderation has this id")
    client, caller = client_of(request), caller_of(request)
    verdict = await client.get(moderation_id)
    if verdict is not None and caller.may_read(verdict.owner):
        return verdict
    if verdict is None:
        pending, owner = await client.pending_owner(moderation_id)
        if pending and caller.may_read(owner):
            return Pending(id=moderation_id, status="pending")
    raise ApiProblem(404, "not_found", f"no moderation {moderation_id} is known (never submitted, or expired)")


async def _submit(request: Request, submissions: list[Submission]) -> list[Accepted]:
    client = client_of(request)
    try:
        ids = await client.submit_many(submissions, owner=caller_of(request).key_id)
    except IdempotencyConflict as exc:
        where = f"items[{exc.index}]: " if len(submissions) > 1 else ""
        detail = f"{where}the idempotency key was already used for a different image or other options; use a new key"
        raise ApiProblem(409, "idempotency_conflict", detail) from None
    except ValueError as exc:
        raise ApiProblem(422, "request_invalid", str(exc)) from None
    replays = [i for i, s in zip(ids, submissions, strict=True) if s.idempotency_key]
    # A repeated idempotency key may name a finished moderation: report its state, not `pending`.
    done = await client.get_many(replays) if replays else {}
    return [Accepted(id=i, status=done[i].status if i in done else "pending", url=f"{PREFIX}/{i}") for i in ids]


async def _from_form(request: Request) -> Submission:
    async with request.form(max_files=1, max_fields=len(_FORM_FIELDS)) as form:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiProblem(422, "request_invalid", "multipart field 'image' must be a file")
        data = await upload.read()
        fields = {k: v for k, v in form.items() if k in _FORM_FIELDS and isinstance(v, str)}
        unknown = sorted(set(form.keys()) - {*_FORM_FIELDS, "image"})
        repeated = sorted(k for k in set(form.keys()) if len(form.getlist(k)) > 1)
    if unknown or repeated:
        what = f"unknown form fields: {', '.join(unknown)}" if unknown else f"repeated: {', '.join(repeated)}"
        raise ApiProblem(422, "request_invalid", what)
    options = _validated(ModerationOptions, _form_options(fields))
    return rules_of(request).submission(options, data)


def _form_options(fields: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = dict(fields)
    if "non_violating" in fields:
        options["non_violating"] = fields["non_violating"].split(",") if fields["non_violating"] else []
    if "priority" in fields and re.fullmatch(r"-?[0-9]{1,3}", fields["priority"]):
        options["priority"] = int(fields["priority"])  # a form field is text; anything else fails validation
    if "metadata" in fields:
        try:
            options["metadata"] = json.loads(shallow_json(fields["metadata"], "metadata", MAX_JSON_DEPTH))
        except ValueError:
            raise ApiProblem(422, "request_invalid", "metadata: must be a JSON object") from None
    return options


async def _json(request: Request) -> Any:
    """JSON is UTF-8 (RFC 8259): the structure scan in `limits` reads UTF-8, so UTF-16 or -32 is not JSON here."""
    try:
        return json.loads((await request.body()).decode("utf-8", "surrogatepass"))  # surrogates: 422 later
    except ValueError:
        raise ApiProblem(400, "body_not_json", "the request body is not valid JSON") from None
    except RecursionError:  # the depth limit comes first; this is its backstop
        raise ApiProblem(400, "body_too_deep", "the JSON body nests too deep") from None


def _validated(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(unicode_only(data))
    except ValidationError as exc:
        raise invalid_request(exc) from None


def router(
    policy_names: list[str], *, allow_http: bool, max_batch_items: int, max_image_bytes: int,
    s3_buckets: list[str] | None = None,
) -> APIRouter:
    """The moderation routes, their request bodies documented with the server's actual rules."""
    item = moderation_schema(policy_names, allow_http=allow_http, s3_buckets=s3_buckets or ())
    one = {"application/json": {"schema": item},
           "multipart/form-data": {"schema": upload_schema(policy_names, max_image_bytes), "encoding": UPLOAD_ENCODING}}
    batch = {"application/json": {"schema": batch_schema(item, max_batch_items)}}
    created = problem_responses(400, 401, 409, 413, 415, 422, 503)
    api = APIRouter()
    created_or_judged = {**created, 200: {"model": Verdict, "description": "`?wait=`: the verdict, stored in time"}}
    api.add_api_route(PREFIX, create_one, methods=["POST"], status_code=202, response_model=Accepted,
                      summary="Enqueue one image (JSON with image_url, or a multipart upload)",
                      openapi_extra={"requestBody": {"required": True, "content": one}},
                      responses=created_or_judged)
    api.add_api_route(f"{PREFIX}/batch", create_batch, methods=["POST"], status_code=202,
                      response_model=BatchAccepted, summary="Enqueue many images",
                      openapi_extra={"requestBody": {"required": True, "content": batch}}, responses=created)
    api.add_api_route(f"{PREFIX}/{{moderation_id}}", read_one, methods=["GET"], response_model=Verdict | Pending,
                      summary="Read a moderation: its verdict, or pending",
                      responses=problem_responses(401, 404, 422, 503))
    return api
