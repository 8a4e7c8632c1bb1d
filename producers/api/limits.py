"""A hard cap on request bodies, enforced while they arrive, before any parser buffers or spools them.

An image over `LLAVAGUARD_MAX_IMAGE_BYTES` is refused with a 422 once parsed; this cap (the image limit plus
room for the form or JSON around it) stops a client from making the server read, or write to a temporary
file, a gigabyte first. A declared `Content-Length` over the cap is refused at once; an undeclared (chunked)
body is counted and cut off at the cap. Both answer 413 `image_too_large` as problem+json.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.api.problems import ApiProblem, problem_response

ENVELOPE_BYTES = 1024 * 1024
"""Room for multipart headers, form fields and JSON metadata around the image."""


class BodyTooLarge(ApiProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "image_too_large", f"the request body is larger than {limit} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _drain(receive)
            await problem_response(BodyTooLarge(self.max_body_bytes))(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)  # the app's handlers answer it as a problem
            return message

        return counted


def _content_length(scope: Scope) -> int | None:
    headers: Any = scope.get("headers", [])
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Receive, budget: int = 64 * 1024) -> None:
    """Read (and drop) the first bytes the client sends, so that it sees the reply rather than a reset."""
    seen = 0
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        seen += len(message.get("body", b""))
