"""The API's own Prometheus metrics (`llavaguard_api_*`): requests by route and status, latency, problems.

Served on a bind of their own (`LLAVAGUARD_API_METRICS_HOST`/`_PORT`, see `serving`), not on the API's port:
Prometheus then scrapes without an API key, and the bind stays on the internal network while the API's own
port is public. `llavaguard api` sets up multiprocess mode before this module is imported, so `--workers N`
is summed like the worker's prefork children; `create_app` alone (tests, an embedding app) counts in memory.

Labels are bounded: the route is the matched path template (`/v1/moderations/{moderation_id}`, never the
id) or `unmatched`; problem codes are the fixed set below. Never label by key, client or URL.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods kept as label values; any other (a client may send anything) is counted as `other`."""
UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404 or a body refused before routing)."""

PROBLEM_CODES = (
    "batch_too_large", "body_not_json", "body_too_deep", "callback_secret_unavailable", "callback_url_invalid",
    "category_unknown", "forbidden", "http_error", "idempotency_conflict", "image_empty", "image_too_large",
    "image_url_invalid", "internal_error", "metadata_too_large", "method_not_allowed", "not_found",
    "policy_unknown", "request_invalid", "service_unavailable", "unauthorized", "unsupported_media_type",
)
"""Every `code` a problem response can carry (a test reads the API's source to keep this complete)."""

REQUESTS = Counter(
    "llavaguard_api_requests", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "llavaguard_api_request_duration_seconds", "Time to answer one request, by route template and method.",
    ["route", "method"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PROBLEMS = Counter(
    "llavaguard_api_problems", "problem+json responses, by their stable `code`.", ["code"],
)


def initialise() -> None:
    """Every problem code at 0, so that an alert on `increase(...)` fires on the first one after a start."""
    for code in PROBLEM_CODES:
        PROBLEMS.labels(code=code)


def problem_answered(code: str) -> None:
    PROBLEMS.labels(code=code if code in PROBLEM_CODES else "http_error").inc()


class RequestMetrics:
    """ASGI middleware: count and time each HTTP request by the route that answered it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler ends as a 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope.get("method") if scope.get("method") in METHODS else "other"
            REQUESTS.labels(route=route, method=method, status=str(status)).inc()
            LATENCY.labels(route=route, method=method).observe(time.perf_counter() - started)
