"""The two documents that cross process boundaries: a moderation request and its verdict.

Both are JSON-serialisable pydantic models; the verdict's fields are a public contract (stores, SDK,
webhooks and the HTTP API all carry it), so add fields only in a backwards-compatible way.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_serializer, field_validator, model_validator

from worker.categories import Category, Rating, normalise_codes

DEFAULT_POLICY = "llavaguard-v1.2"
Status = Literal["completed", "failed"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def has_lone_surrogate(value: object) -> bool:
    """Whether any string in a JSON-like value (keys included, at any depth) is not encodable as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def scrub_text(value: object) -> object:
    """A copy of a JSON-like value with lone surrogates replaced by "?", so that a store can keep it."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if has_lone_surrogate(value) else value
    if isinstance(value, dict):
        return {str(scrub_text(k)): scrub_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_text(v) for v in value]
    return value


class ImageRef(BaseModel):
    """Where the image is: an `https://` (or allowed `http://`) URL, an `s3://bucket/key` URI, or inline bytes."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"oneOf": [  # `_exactly_one`, for the JSON Schema
        {"required": ["url"], "properties": {"url": {"type": "string"}}},
        {"required": ["data"], "properties": {"data": {"type": "string"}}},
    ]})

    url: str | None = None
    data: Annotated[bytes, WithJsonSchema({"type": "string", "contentEncoding": "base64"})] | None = None
    """The image bytes, base64 (standard alphabet) on the wire."""
    origin: str | None = Field(default=None, max_length=4096, pattern=r"^file://")
    """Issue 9 item 6: the `file://` URI of the producer's local file that `data` was read from (the SDK given a
    path, `llavaguard submit FILE`). Recorded as the verdict's `image.source`; never read by the worker."""

    @field_validator("data", mode="before")
    @classmethod
    def _decode_base64(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError("inline image data must be base64") from exc
        return value

    @field_serializer("data", when_used="json")
    def _encode_base64(self, value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode("ascii")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        if (self.url is None) == (self.data is None):
            raise ValueError("an image is either a url or inline data, exactly one of them")
        if self.origin is not None and self.data is None:
            raise ValueError("origin describes inline data; a url is its own origin")
        return self

    @property
    def source(self) -> str | None:
        """What the verdict records as the image's origin: the URL/URI, the local file inline bytes were read
        from, or None for bytes of unknown origin."""
        return self.url or self.origin


class ModerationRequest(BaseModel):
    """One image to judge against one policy; the body of every moderation task."""

    model_config = ConfigDict(use_attribute_docstrings=True)  # the docstrings below describe the JSON Schema too

    id: str = Field(min_length=1, max_length=128)
    """Chosen by the producer (docs/wire-contract.md), never invented here: a producer must know the id it waits on."""
    image: ImageRef
    policy: str = DEFAULT_POLICY
    non_violating: list[str] = Field(default_factory=list)
    callback_url: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(default=None, ge=0, le=9)
    """0 (lowest) .. 9 (most urgent); sets the Redis list the message waits in (docs/wire-contract.md)."""
    created_at: datetime = Field(default_factory=utcnow)
    owner: str | None = Field(default=None, max_length=64)
    """The key id (`key_…`, never the key) of the API key that submitted it; None for SDK submissions."""
    audit: str | None = Field(default=None, max_length=64)
    """The name of the audit (`llavaguard audit`) this request belongs to; copied to the verdict."""

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, value: object) -> object:
        # A lone surrogate cannot be encoded as UTF-8: every store would refuse the verdict later (issue 8).
        if has_lone_surrogate(value):
            raise ValueError("a string holds a lone surrogate (not valid Unicode text)")
        return value

    @field_validator("non_violating")
    @classmethod
    def _known_codes(cls, value: list[str]) -> list[str]:
        return normalise_codes(value)


class PolicyRef(BaseModel):
    name: str
    sha256: str | None = None
    """Hash of the exact prompt text sent to the model (None if the moderation failed before building it)."""


class ImageInfo(BaseModel):
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    source: str | None = None
    pdq: str | None = None
    """The 256-bit PDQ perceptual hash as 64 hex characters (issue 12), of the pixels decoded for the model."""
    pdq_quality: int | None = Field(default=None, ge=0, le=100)


Decision = Literal["allow", "review", "block"]


class FrameVerdict(BaseModel):
    """One sampled frame of an animation or video (issue 10)."""

    index: int
    t_s: float | None = None
    rating: Rating | None = None
    category: Category | None = None
    score: float | None = None


class MatchInfo(BaseModel):
    """Why no model was asked (issue 12): an earlier verdict of the same image, or an operator's hash bank."""

    kind: Literal["exact", "pdq", "bank"]
    distance: int | None = None
    verdict_id: str | None = None
    """`exact`/`pdq`: the id of the earlier verdict whose answer was reused."""
    bank: str | None = None
    """`bank`: the bank's name."""
    entry: str | None = None
    """`bank`: which of the bank's entries matched (its hash, or the operator's id for it)."""


class ReviewInfo(BaseModel):
    """A human's look at a verdict (issue 11): requested when the decision was `review` or sampled for quality."""

    status: Literal["pending", "reviewed"]
    reason: str
    """Why it was queued: `review_band` or `quality_sample`."""
    requested_at: datetime
    rating: Rating | None = None
    category: Category | None = None
    note: str | None = None
    reviewer: str | None = None
    reviewed_at: datetime | None = None


class ErrorInfo(BaseModel):
    code: str
    message: str


class Verdict(BaseModel):
    """The outcome of one moderation: `completed` with a rating, or `failed` with an error code."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    status: Status
    rating: Rating | None = None
    category: Category | None = None
    rationale: str | None = None
    policy: PolicyRef
    model: str | None = None
    image: ImageInfo
    error: ErrorInfo | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    completed_at: datetime
    owner: str | None = None
    """Copied from the request: only this API key (or an admin key) reads the verdict through the API."""
    backend: str | None = None
    """The inference backend family that judged it (`sglang`, `vllm`, `openai`, `transformers`)."""
    constraint: str | None = None
    """How the answer was constrained: `regex` (the training layout), `json_schema`, or `none`."""
    score: float | None = None
    """The model's probability that the image is Unsafe, from log-probabilities; None when there were none."""
    score_source: str | None = None
    """Where `score` came from (e.g. `logprobs`), or why it is None (e.g. `backend_returned_none`)."""
    audit: str | None = None
    """Copied from the request: the audit that asked for this verdict (`llavaguard export --audit NAME`)."""
    category_scores: dict[str, float] | None = None
    """Issue 11: normalised probabilities of the category alternatives returned (the chosen one at least)."""
    decision: Decision | None = None
    """Issue 11: what the platform should do, from `score`/`rating` and the policy's thresholds; after a human
    review, the human's decision (the model's `rating` stays as the model said it)."""
    thresholds: dict[str, Any] | None = None
    """Issue 11: the thresholds `decision` was made with, so a verdict can be re-read later."""
    review: ReviewInfo | None = None
    match: MatchInfo | None = None
    frames: list[FrameVerdict] | None = None
    """Issue 10: per sampled frame of an animation or video; None for a still image."""

    @model_validator(mode="after")
    def _consistent(self) -> Verdict:
        if self.status == "completed" and (self.rating is None or self.category is None or self.error):
            raise ValueError("a completed verdict has a rating and a category and no error")
        if self.status == "failed" and self.error is None:
            raise ValueError("a failed verdict carries an error")
        return self

    @property
    def is_unsafe(self) -> bool:
        return self.rating == "Unsafe"
