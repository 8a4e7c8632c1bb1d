"""The API's documents: what a client sends and what it gets back, and their OpenAPI schemas.

The request bodies are parsed by hand (one endpoint takes JSON or multipart), so their OpenAPI schemas are
built here from the pydantic models, tightened with what the server knows at start-up (the policy names,
whether `http://` is allowed): a client, or schemathesis, generating from the schema sends valid requests.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from producers.references import MAX_URL_LENGTH
from worker.categories import POLICY_CODES

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_KEYS = 64
MAX_IDEMPOTENCY_KEY = 256
Status = Literal["pending", "completed", "failed"]

_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_HOST = rf"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:{_PORT})?"
_VISIBLE = r"[^\x00-\x20\x7f]"
"""No controls, no spaces; spelled out, because regex engines disagree on what "not whitespace" covers (U+001F)."""
CALLBACK_URL_PATTERN = rf"^https?://{_HOST}(/{_VISIBLE}*)?$"
CODES_FIELD_PATTERN = r"^(O[1-9](,O[1-9])*)?$"
"""A multipart `non_violating` field: comma-separated codes, nothing else."""


def image_url_pattern(*, allow_http: bool, s3_buckets: Collection[str] = ()) -> str:
    """What the API accepts as `image_url`: the server applies this very pattern, so schema and server agree.

    `s3://` only for the buckets in LLAVAGUARD_S3_ALLOWED_BUCKETS (none: no `s3://` at all)."""
    scheme = "https?" if allow_http else "https"
    buckets = "|".join(name.replace(".", r"\.") for name in sorted(s3_buckets))  # names are [a-z0-9.-] only
    s3 = rf"|s3://({buckets})/{_VISIBLE}+" if buckets else ""
    return rf"^({scheme}://{_HOST}(/{_VISIBLE}*)?{s3})$"


class ModerationOptions(BaseModel):
    """How to moderate an image: everything but the image itself (multipart uploads send these as fields)."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = Field(None, description="a policy name known to the server (default llavaguard-v1.2)")
    non_violating: list[str] = Field(default_factory=list, max_length=32,
                                     description="category codes to allow, e.g. [\"O6\"]")
    callback_url: str | None = Field(None, max_length=MAX_URL_LENGTH, description="webhook for the verdict")
    metadata: dict[str, Any] = Field(default_factory=dict, max_length=MAX_METADATA_KEYS,
                                     description="echoed in the verdict (at most 64 KiB of JSON)")
    idempotency_key: str | None = Field(None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY,
                                        description="the same key always yields the same id, enqueued once")
    priority: int | None = Field(None, ge=0, le=9, description="0 (lowest) .. 9 (most urgent)")

    @field_validator("priority", mode="before")
    @classmethod
    def _json_integer(cls, value: object) -> object:
        """JSON Schema's integer: 2 and 2.0, never true or "2" (pydantic's lax mode would take both)."""
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        raise ValueError("must be an integer")


class ModerationCreate(ModerationOptions):
    """One image to moderate; only `image_url` is required."""

    image_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH,
                           description="https:// URL (http:// if the server allows it) or s3://bucket/key "
                                       "(an allowed bucket)")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ModerationCreate] = Field(min_length=1)


class Accepted(BaseModel):
    """The answer to a submission: the id to poll, and where."""

    id: str
    status: Status
    """`pending` for a new submission; a repeated idempotency key reports the moderation's current state."""
    url: str


class BatchAccepted(BaseModel):
    items: list[Accepted]


class Pending(BaseModel):
    """A moderation that is enqueued and has no verdict yet."""

    id: str
    status: Literal["pending"]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


def moderation_schema(
    policy_names: list[str], *, allow_http: bool, s3_buckets: Collection[str] = ()
) -> dict[str, Any]:
    """The JSON schema of one moderation request, tightened with the server's actual rules."""
    schema = ModerationCreate.model_json_schema()
    props = schema["properties"]
    props["image_url"]["pattern"] = image_url_pattern(allow_http=allow_http, s3_buckets=s3_buckets)
    props["policy"] = _nullable({"type": "string", "enum": policy_names}, props["policy"])
    props["non_violating"]["items"] = {"type": "string", "enum": list(POLICY_CODES)}
    props["callback_url"] = _nullable(
        {"type": "string", "pattern": CALLBACK_URL_PATTERN, "maxLength": MAX_URL_LENGTH}, props["callback_url"]
    )
    return schema


def upload_schema(policy_names: list[str], max_image_bytes: int) -> dict[str, Any]:
    """The multipart form: the image file plus the same options as form fields."""
    return {
        "type": "object",
        "required": ["image"],
        "additionalProperties": False,
        "properties": {
            "image": {"type": "string", "format": "binary", "minLength": 1,
                      "description": f"the image file, at most {max_image_bytes} bytes (LLAVAGUARD_MAX_IMAGE_BYTES)"},
            "policy": {"type": "string", "enum": policy_names},
            "non_violating": {"type": "string", "pattern": CODES_FIELD_PATTERN,
                              "description": "comma-separated category codes, e.g. O2,O6"},
            "callback_url": {"type": "string", "pattern": CALLBACK_URL_PATTERN, "maxLength": MAX_URL_LENGTH},
            "metadata": {"type": "object", "maxProperties": MAX_METADATA_KEYS,
                         "description": "a JSON object, echoed in the verdict"},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        },
    }


def _nullable(schema: dict[str, Any], generated: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "default": None, "description": generated.get("description", "")}


UPLOAD_ENCODING = {
    "metadata": {"contentType": "application/json"},
    "image": {"contentType": "application/octet-stream"},
}


def batch_schema(item: dict[str, Any], max_items: int) -> dict[str, Any]:
    return {
        "type": "object", "required": ["items"], "additionalProperties": False,
        "properties": {"items": {"type": "array", "items": item, "minItems": 1, "maxItems": max_items}},
    }
