"""Hard caps on request bodies, enforced while they arrive, before any parser buffers, spools or builds them.

Multipart uploads: an image over `LLAVAGUARD_MAX_IMAGE_BYTES` is refused with a 422 once parsed; this cap
(the image limit plus room for the form around it) stops a client from making the server read, or write to
a temporary file, a gigabyte first: 413 `image_too_large`.

Every other body is JSON (or refused as not JSON): it is read whole within a JSON cap derived from the
settings (413 `body_too_large`), then its structure is checked before `json.loads` sees it: nesting deeper
than `MAX_JSON_DEPTH` is 400 `body_too_deep`, a batch with more items than `LLAVAGUARD_API_MAX_BATCH_ITEMS`
is 422 `batch_too_large`, without building one item. A declared `Content-Length` over a cap is refused at
once; an undeclared (chunked) body is counted and cut off at the cap. Every refusal is problem+json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.api.jsonshape import Structure, too_deep, widest_near_top
from producers.api.problems import ApiProblem, problem_response
from producers.api.schemas import MAX_IDEMPOTENCY_KEY, MAX_METADATA_BYTES
from producers.references import MAX_URL_LENGTH

ENVELOPE_BYTES = 1024 * 1024
"""Room for multipart headers, form fields and JSON metadata around the image."""
MAX_JSON_DEPTH = 32
"""A moderation nests 3 levels (body, items, item) around its metadata; 29 more levels is more than any
real metadata needs, and far below where `json.loads` or pydantic recurse into trouble (~1,000)."""
ITEM_JSON_BYTES = MAX_METADATA_BYTES + 2 * MAX_URL_LENGTH + MAX_IDEMPOTENCY_KEY + 8 * 1024
"""The largest JSON moderation the rules allow (metadata, image and callback URLs, key), plus room for
options and whitespace: the cap on a `POST /v1/moderations` JSON body."""
BATCH_ITEM_JSON_BYTES = 16 * 1024
"""An average batch item's share of a batch body: a URL, options and a few KiB of metadata. One item may be
larger as long as the batch fits; 1,000 items of 64 KiB metadata each are sent as several batches."""


@dataclass(frozen=True)
class BodyCaps:
    max_multipart_bytes: int
    batch_path: str
    max_batch_items: int

    @classmethod
    def of(cls, max_image_bytes: int, batch_path: str, max_batch_items: int) -> BodyCaps:
        return cls(max_image_bytes + ENVELOPE_BYTES, batch_path, max_batch_items)

    def max_json_bytes(self, path: str) -> int:
        if path == self.batch_path:
            return max(ITEM_JSON_BYTES, self.max_batch_items * BATCH_ITEM_JSON_BYTES)
        return ITEM_JSON_BYTES


class BodyTooLarge(ApiProblem):
    def __init__(self, limit: int, code: str = "image_too_large") -> None:
        super().__init__(413, code, f"the request body is larger than {limit} bytes")


class BodyLimits:
    """ASGI middleware: every route is behind it, and nothing reads a body before it has."""

    def __init__(self, app: ASGIApp, caps: BodyCaps) -> None:
        self.app, self.caps = app, caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif _media_type(scope) == "multipart/form-data":
            await self._multipart(scope, receive, send)
        else:
            await self._json(scope, receive, send)

    async def _multipart(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.caps.max_multipart_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _drain(receive)
            await problem_response(BodyTooLarge(limit))(scope, receive, send)
            return
        await self.app(scope, _counting(receive, limit), send)

    async def _json(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.caps.max_json_bytes(scope["path"])
        declared = _content_length(scope)
        try:
            if declared is not None and declared > limit:
                await _drain(receive)
                raise BodyTooLarge(limit, "body_too_large")
            body, structure = await _read_json(receive, limit)
            self._check(scope["path"], structure)
        except ApiProblem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        await self.app(scope, _replaying(body, receive), send)

    def _check(self, path: str, structure: bytes) -> None:
        if too_deep(structure, MAX_JSON_DEPTH):
            raise ApiProblem(400, "body_too_deep", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
        limit = self.caps.max_batch_items
        if path == self.caps.batch_path and widest_near_top(structure, limit, MAX_JSON_DEPTH) > limit:
            raise ApiProblem(422, "batch_too_large", f"a batch holds at most {limit} items, got more")


async def _read_json(receive: Receive, limit: int) -> tuple[bytes, bytes]:
    """The whole body and its JSON structure, read chunk by chunk; 413 past `limit` bytes."""
    chunks: list[bytes] = []
    structure = Structure()
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", b""  # the client left: the app sees an empty body, its reply goes nowhere
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            await _drain(receive)
            raise BodyTooLarge(limit, "body_too_large")
        chunks.append(chunk)
        structure.feed(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), structure.value()


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body already read, as one message; then the client's own channel (for its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)  # the app's handlers answer it as a problem
        return message

    return counted


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    headers: Any = scope.get("headers", [])
    for name, value in headers:
        if name == wanted:
            return bytes(value)
    return None


def _media_type(scope: Scope) -> str:
    value = _header(scope, b"content-type") or b""
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


def _content_length(scope: Scope) -> int | None:
    try:
        return int(_header(scope, b"content-length") or b"")
    except ValueError:
        return None


async def _drain(receive: Receive, budget: int = 64 * 1024) -> None:
    """Read (and drop) the next bytes the client sends, so that it sees the reply rather than a reset."""
    seen = 0
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        seen += len(message.get("body", b""))
