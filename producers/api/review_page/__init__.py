"""`/review`: the reviewers' page, three static files (HTML, JS, CSS) with no build step and no external asset.

Served without a key (it holds no data): the page asks for a reviewer key once, keeps it in sessionStorage
and sends it as `Authorization: Bearer` to the review endpoints. The Content-Security-Policy allows only this
origin's script, style and API, and images only as blobs (the retained copy the script fetched with the key),
so the page cannot load anything from anywhere else, the original image URL included.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from worker.categories import CATEGORIES

PATH = "/review"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_FILES = {"review.html": "text/html; charset=utf-8", "review.js": "text/javascript; charset=utf-8",
          "review.css": "text/css; charset=utf-8"}


def _read(name: str) -> bytes:
    text = resources.files(__package__).joinpath(name).read_text("utf-8")
    if name == "review.html":  # the categories as a JSON data block (not executed, so the CSP allows it)
        text = text.replace("__CATEGORIES__", json.dumps(list(CATEGORIES)).replace("<", "\\u003c"))
    return text.encode("utf-8")


def _serve(name: str) -> Callable[[], Awaitable[Response]]:
    body, media_type = _read(name), _FILES[name]

    async def serve() -> Response:
        return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

    return serve


def router() -> APIRouter:
    api = APIRouter(include_in_schema=False)
    api.add_api_route(PATH, _serve("review.html"), methods=["GET"])
    for name in ("review.js", "review.css"):
        api.add_api_route(f"{PATH}/{name}", _serve(name), methods=["GET"])
    return api
