"""`create_app(settings)`: the HTTP ingestion API as a FastAPI application (served by `llavaguard api`).

Routes (`routes.py`) are a thin layer over the SDK; auth (`auth.py`), errors (`problems.py`), the body cap
(`limits.py`) and health (`health.py`) are assembled here. One `AsyncModerationClient` per process, opened
with the application and closed with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import Depends, FastAPI
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from producers.api import callbacks, health, problems, review_page, reviews, routes, wire
from producers.api import metrics as api_metrics
from producers.api.auth import api_key_check, reviewer_key_check
from producers.api.limits import BodyCaps, BodyLimits
from producers.api.metrics import RequestMetrics
from producers.api.problems import ApiProblem, UnexpectedErrors, problem_response
from producers.api.validation import Rules
from producers.async_client import AsyncModerationClient
from worker.composition import callback_secrets, review_desk
from worker.errors import SettingsError, StoreUnavailable
from worker.policy import PolicyRegistry
from worker.settings import Settings, load_settings

DESCRIPTION = """Enqueue images for moderation by LlavaGuard and read their verdicts.

Authenticate with `Authorization: Bearer <key>` (a key from `LLAVAGUARD_API_KEYS`). Errors are
`application/problem+json` with a stable `code`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    if not settings.api_keys and not settings.api_admin_keys and not settings.api_reviewer_keys:
        raise SettingsError("LLAVAGUARD_API_KEYS: set at least one key; the HTTP API never runs without one")
    policies = PolicyRegistry(settings.policy_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = AsyncModerationClient(settings=settings, create_store=True)  # 404/pending, not 500
        app.state.redis = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=health.CHECK_TIMEOUT_S)
        app.state.review_desk = reviews.LazyDesk(lambda: review_desk(settings, app.state.client.sync.store))
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.client.aclose()

    public = settings.api_public_docs  # false: no /docs, /redoc or /openapi.json at all (404 like any unknown path)
    app = FastAPI(title="llavaguard", version="1", description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs" if public else None, redoc_url="/redoc" if public else None,
                  openapi_url="/openapi.json" if public else None)
    app.state.settings = settings
    app.state.rules = Rules(policies, settings.allow_http, settings.max_image_bytes,
                            frozenset(settings.s3_allowed_buckets))
    problems.install(app)
    _install_dependency_errors(app)
    caps = BodyCaps.of(settings.max_image_bytes, f"{routes.PREFIX}/batch", settings.api_max_batch_items)
    app.add_middleware(BodyLimits, caps=caps)
    app.add_middleware(UnexpectedErrors)  # also answers for a fault in the middlewares above
    app.add_middleware(RequestMetrics)  # outermost: counts every answer, the 500s of UnexpectedErrors too
    api_metrics.initialise()
    moderation = routes.router(policies.names(), allow_http=settings.allow_http,
                               max_batch_items=settings.api_max_batch_items, max_image_bytes=settings.max_image_bytes,
                               s3_buckets=settings.s3_allowed_buckets)
    keys = [Depends(api_key_check(settings.api_keys, settings.api_admin_keys))]
    app.include_router(moderation, dependencies=keys, tags=["moderations"])
    app.include_router(callbacks.router(callback_secrets(settings)), dependencies=keys, tags=["callbacks"])
    reviewer = [Depends(reviewer_key_check(settings.api_reviewer_keys, [*settings.api_keys, *settings.api_admin_keys]))]
    app.include_router(reviews.router(), dependencies=reviewer, tags=["reviews"])
    app.include_router(review_page.router())
    app.include_router(health.router())
    app.include_router(wire.schemas_router([] if public else keys))  # public like /openapi.json, else keyed
    wire.document_webhooks(app)
    return app


def _install_dependency_errors(app: FastAPI) -> None:
    """Redis or the store being down is the server's trouble, not the client's: 503, try again later."""

    async def unavailable(_: object, exc: Exception) -> object:
        what = "the verdict store" if isinstance(exc, StoreUnavailable) else "the broker (Redis)"
        problem = ApiProblem(503, "service_unavailable", f"{what} is unavailable; retry later",
                             headers={"Retry-After": "5"})
        return problem_response(problem)

    for kind in (StoreUnavailable, RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(kind, unavailable)  # type: ignore[arg-type]
