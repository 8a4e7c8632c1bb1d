"""The review endpoints (issue 11): the queue, one item, its retained image, and a reviewer's label.

A thin layer over `worker.review.desk.ReviewDesk` (sync: Redis and the store), run in the thread pool. Only
reviewer keys reach these routes (`auth.reviewer_key_check`). The image is the retained copy of the model's
input served from here: an item never carries its original URL (`image.source` is blanked), so a reviewer's
browser has nothing else to fetch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from producers.api.auth import caller_of
from producers.api.problems import ApiProblem, problem_responses
from producers.api.routes import _ID, _json, _validated
from worker.errors import ReviewConflict, ReviewNotFound
from worker.models import Verdict
from worker.review.desk import MAX_NOTE_CHARS, ReviewDesk

PREFIX = "/v1/reviews"


class ReviewItem(BaseModel):
    id: str
    image_url: str
    """The retained copy (`GET /v1/reviews/{id}/image`, reviewer key); 404 once deleted or expired."""
    verdict: Verdict
    """The verdict: the model's `rating`/`category`/`score`/`rationale`, `review`, and the final `decision`."""


class ReviewList(BaseModel):
    items: list[ReviewItem]
    pending: int
    """How many items wait in the queue in all."""


class LabelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: str = Field(min_length=1, max_length=16, description="`Safe` or `Unsafe`")
    category: str = Field(min_length=1, max_length=64, description="A category or its code (`O4`, `NA`)")
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class LazyDesk:
    """The desk, built on first use: the API starts (and moderates) while the store is still unreachable, as
    before; the store is the SDK client's own (opened lazily, closed with it)."""

    def __init__(self, build: Callable[[], ReviewDesk]) -> None:
        self._build = build
        self._desk: ReviewDesk | None = None
        self._lock = threading.Lock()

    def get(self) -> ReviewDesk:
        with self._lock:
            if self._desk is None:
                self._desk = self._build()
            return self._desk


async def desk_of(request: Request) -> ReviewDesk:
    lazy: LazyDesk = request.app.state.review_desk
    return await run_in_threadpool(lazy.get)


def item_of(verdict: Verdict) -> ReviewItem:
    shown = verdict.model_copy(update={"image": verdict.image.model_copy(update={"source": None})})
    return ReviewItem(id=verdict.id, image_url=f"{PREFIX}/{verdict.id}/image", verdict=shown)


async def list_items(
    request: Request, status: Literal["pending", "reviewed"] = "pending",
    limit: int = Query(default=50, ge=1, le=500),
) -> ReviewList:
    """GET /v1/reviews?status=pending: oldest first (reviewed: newest first)."""
    desk = await desk_of(request)
    verdicts = await run_in_threadpool(desk.items, status, limit=limit)
    pending = await run_in_threadpool(desk.queue.count, "pending")
    return ReviewList(items=[item_of(v) for v in verdicts], pending=pending)


async def read_item(request: Request, review_id: str) -> ReviewItem:
    return item_of(await _get(request, review_id))


async def read_image(request: Request, review_id: str) -> Response:
    await _get(request, review_id)
    image = await run_in_threadpool((await desk_of(request)).image, review_id)
    if image is None:
        raise ApiProblem(404, "image_not_retained", f"the retained copy of {review_id} was deleted or never kept")
    return Response(image.data, media_type=image.mime,
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


async def label_item(request: Request, review_id: str) -> ReviewItem:
    """POST /v1/reviews/{id} `{rating, category, note}`: the human label becomes the final decision."""
    body = _validated(LabelCreate, await _json(request))
    if not _ID.match(review_id):
        raise ApiProblem(404, "not_found", "no review item has this id")
    desk, reviewer = await desk_of(request), caller_of(request).key_id
    try:
        verdict = await run_in_threadpool(desk.label, review_id, body.rating, body.category, body.note, reviewer)
    except ReviewNotFound:
        raise ApiProblem(404, "not_found", f"no review item {review_id}") from None
    except ReviewConflict as exc:
        raise ApiProblem(409, "already_reviewed", str(exc)) from None
    except ValueError as exc:
        raise ApiProblem(422, "request_invalid", str(exc)) from None
    return item_of(verdict)


async def _get(request: Request, review_id: str) -> Verdict:
    if not _ID.match(review_id):
        raise ApiProblem(404, "not_found", "no review item has this id")
    try:
        return await run_in_threadpool((await desk_of(request)).get, review_id)
    except ReviewNotFound:
        raise ApiProblem(404, "not_found", f"no review item {review_id}") from None


def router() -> APIRouter:
    api = APIRouter()
    read = problem_responses(401, 403, 404, 503)
    api.add_api_route(PREFIX, list_items, methods=["GET"], response_model=ReviewList,
                      summary="The review queue", responses=problem_responses(401, 403, 422, 503))
    api.add_api_route(f"{PREFIX}/{{review_id}}", read_item, methods=["GET"], response_model=ReviewItem,
                      summary="One review item", responses=read)
    api.add_api_route(f"{PREFIX}/{{review_id}}/image", read_image, methods=["GET"], response_class=Response,
                      summary="The retained copy of the model's input", responses=read)
    label = {"application/json": {"schema": LabelCreate.model_json_schema()}}
    api.add_api_route(f"{PREFIX}/{{review_id}}", label_item, methods=["POST"], response_model=ReviewItem,
                      summary="Record a reviewer's label", openapi_extra={"requestBody": {"required": True,
                                                                                          "content": label}},
                      responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))
    return api
