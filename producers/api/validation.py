"""Turn an HTTP request's fields into an SDK `Submission`, or a 422 problem saying exactly what is wrong.

The SDK already refuses malformed images, categories and priorities; the API adds what a remote client
must be told up front instead of finding a `failed` verdict later: an unknown policy, `http://` when the
workers would refuse it, `file://` (a worker-local path is for `llavaguard audit` on a shared mount, never
for remote clients), a malformed callback URL, oversized metadata or upload, and text that is not Unicode
(a lone surrogate such as `"\\udc80"` is valid JSON, but no store, queue or webhook can encode it: accepted,
it would stay pending forever).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from producers.api.jsonshape import structure_of, too_deep
from producers.api.problems import ApiProblem
from producers.api.schemas import CALLBACK_URL_PATTERN, MAX_METADATA_BYTES, ModerationOptions, image_url_pattern
from producers.client import Submission
from producers.references import ImageRefused, check_image_url
from worker.categories import POLICY_CODES, normalise_codes
from worker.policy import PolicyRegistry


@dataclass(frozen=True)
class Rules:
    policies: PolicyRegistry
    allow_http: bool
    max_image_bytes: int
    s3_allowed_buckets: frozenset[str] = frozenset()

    def submission(self, body: ModerationOptions, image: str | bytes) -> Submission:
        """The SDK submission for an image URL (JSON) or uploaded bytes (multipart) with these options."""
        return Submission(
            image=self.upload(image) if isinstance(image, bytes) else self.image_url(image),
            policy=self.policy(body.policy),
            non_violating=self.categories(body.non_violating),
            callback_url=self.callback_url(body.callback_url),
            metadata=self.metadata(body.metadata),
            idempotency_key=body.idempotency_key,
            priority=body.priority,
        )

    def image_url(self, url: str) -> str:
        if url[:5].lower() == "s3://":
            self._s3_allowed(url)
        if not re.search(image_url_pattern(allow_http=self.allow_http, s3_buckets=self.s3_allowed_buckets), url):
            schemes = "https:// or http://" if self.allow_http else "https://"
            detail = f"image_url must be an {schemes} URL with a host name, or s3://bucket/key; got {url[:80]!r}"
            raise ApiProblem(422, "image_url_invalid", detail)
        try:
            return check_image_url(url, s3_allowed_buckets=self.s3_allowed_buckets)
        except ValueError as exc:
            raise ApiProblem(422, "image_url_invalid", str(exc)) from None

    def _s3_allowed(self, url: str) -> None:
        """A bucket outside LLAVAGUARD_S3_ALLOWED_BUCKETS: the worker's own refusal, told at submit time."""
        try:
            check_image_url(url, s3_allowed_buckets=self.s3_allowed_buckets)
        except ImageRefused as exc:
            raise ApiProblem(422, str(exc.code), str(exc)) from None
        except ValueError:
            return  # malformed: the pattern below says so

    def upload(self, data: bytes) -> bytes:
        if not data:
            raise ApiProblem(422, "image_empty", "the uploaded image is empty")
        if len(data) > self.max_image_bytes:
            raise ApiProblem(422, "image_too_large",
                             f"the uploaded image is {len(data)} bytes, over the limit of {self.max_image_bytes}")
        return data

    def policy(self, name: str | None) -> str | None:
        if name is not None and name not in self.policies.names():
            known = ", ".join(self.policies.names())
            raise ApiProblem(422, "policy_unknown", f"unknown policy {name!r}; known: {known}")
        return name

    def categories(self, codes: list[str]) -> list[str]:
        unknown = [c for c in codes if c not in POLICY_CODES]
        if unknown:
            raise ApiProblem(422, "category_unknown",
                             f"unknown category {unknown[0]!r}: expected one of {', '.join(POLICY_CODES)}")
        return normalise_codes(codes)

    def callback_url(self, url: str | None) -> str | None:
        if url is not None and not re.search(CALLBACK_URL_PATTERN, url):
            raise ApiProblem(422, "callback_url_invalid", f"callback_url must be an http(s) URL, got {url[:80]!r}")
        return url

    def metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(metadata, separators=(",", ":")).encode("utf-8"))
        if size > MAX_METADATA_BYTES:
            raise ApiProblem(422, "metadata_too_large", f"metadata is {size} bytes of JSON, over {MAX_METADATA_BYTES}")
        return metadata


def unicode_only(data: Any) -> Any:
    """`data` (parsed JSON or form fields) if every string in it, keys included, is encodable Unicode."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        where = (_not_unicode(data) or "body").encode("utf-8", "backslashreplace").decode("utf-8")
        raise ApiProblem(422, "request_invalid", f"{where}: a lone surrogate is not Unicode text",
                         errors=[{"loc": where.split("."), "msg": "a lone surrogate is not Unicode text"}]) from None
    return data


def _not_unicode(data: Any, where: str = "") -> str | None:
    """Where the first string that is not encodable Unicode is, as `items.0.metadata.a`."""
    if isinstance(data, str):
        return None if _encodable(data) else where
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in children:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and not _encodable(key):
            return path
        if (found := _not_unicode(value, path)) is not None:
            return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shallow_json(text: str, field: str, max_depth: int) -> str:
    """A JSON form field, refused (400 `body_too_deep`) if it nests deeper than `max_depth` levels."""
    if too_deep(structure_of(text.encode("utf-8", "surrogatepass")), max_depth):
        raise ApiProblem(400, "body_too_deep", f"{field}: the JSON nests deeper than {max_depth} levels")
    return text
