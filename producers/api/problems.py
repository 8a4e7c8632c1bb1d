"""Every error the HTTP API answers, as RFC 9457 `application/problem+json`.

One exception type (`ApiProblem`) carries status, title, a human `detail` and a stable machine `code`;
handlers installed here turn it, FastAPI's validation errors and Starlette's own HTTP errors (unknown route,
wrong method, malformed multipart) into the same shape, so a client parses one kind of error body.
"""

from __future__ import annotations

import http
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.api import metrics
from worker.validation_errors import field_errors, location

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger(__name__)


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    """Stable, for clients to branch on: `unauthorized`, `not_found`, `image_url_invalid`, `policy_unknown` ..."""
    errors: list[dict[str, Any]] | None = None
    """Per-field problems of a request that failed validation (`loc`, `msg`)."""


class ApiProblem(Exception):
    def __init__(
        self, status: int, code: str, detail: str, *, errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors, self.headers = errors, headers


def problem_response(problem: ApiProblem) -> JSONResponse:
    metrics.problem_answered(problem.code)
    body = Problem(
        title=http.HTTPStatus(problem.status).phrase, status=problem.status, detail=problem.detail,
        code=problem.code, errors=problem.errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def invalid_request(exc: ValidationError | RequestValidationError, prefix: str = "") -> ApiProblem:
    errors = field_errors(exc)
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = location(first["loc"]) or "body"
    return ApiProblem(422, "request_invalid", f"{prefix}{where}: {first['msg']}", errors=errors)


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem document."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(invalid_request(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(ApiProblem(exc.status_code, code, str(exc.detail), headers=headers))

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


class UnexpectedErrors:
    """ASGI middleware: an exception no handler answered is one log line and a 500 problem without details.

    The line carries the exception's type and a plain traceback (`format_exc_info`: source lines, never
    local variables, which hold request headers and keys); the client learns nothing but `internal_error`.
    Catching it here, instead of in Starlette's `ServerErrorMiddleware`, keeps it from being re-raised to
    uvicorn and logged a second time in uvicorn's own format.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.exception("api.unexpected_error", error_type=type(exc).__name__, method=scope.get("method"),
                          path=scope.get("path"))
            if not started:  # after the first byte of a reply, the connection is all that can be ended
                problem = ApiProblem(500, "internal_error", "an unexpected error occurred; see the server log")
                await problem_response(problem)(scope, receive, send)


def problem_schema() -> dict[str, Any]:
    return Problem.model_json_schema()


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all problem+json."""
    return {
        status: {
            "description": http.HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": problem_schema()}},
        }
        for status in statuses
    }
