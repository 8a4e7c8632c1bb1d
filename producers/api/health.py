"""Liveness and readiness for orchestrators; no API key needed, nothing revealed but "ok"/"down".

`/healthz` answers while the process serves requests. `/readyz` also checks what every submission and read
needs: Redis (the broker and the enqueued markers) and the verdict store; 503 when either is down, so a load
balancer stops routing to this instance until both are back.
"""

from __future__ import annotations

import asyncio

import redis.asyncio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from producers.api.problems import PROBLEM_MEDIA_TYPE, problem_responses
from producers.api.schemas import Health
from producers.async_client import AsyncModerationClient

PROBE_ID = "readiness-probe"
CHECK_TIMEOUT_S = 3.0


async def live() -> Health:
    return Health(status="ok")


async def ready(request: Request) -> JSONResponse:
    client: AsyncModerationClient = request.app.state.client
    broker: redis.asyncio.Redis[bytes] = request.app.state.redis
    checks = {
        "redis": await _check(broker.ping()),
        "store": await _check(asyncio.to_thread(client.sync.store.get, PROBE_ID)),
    }
    if all(state == "ok" for state in checks.values()):
        return JSONResponse(Health(status="ready", checks=checks).model_dump())
    down = ", ".join(name for name, state in checks.items() if state != "ok")
    body = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "code": "not_ready",
            "detail": f"not ready: {down} unavailable", "checks": checks}
    return JSONResponse(body, status_code=503, media_type=PROBLEM_MEDIA_TYPE)


async def _check(probe: object) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 (any failure means "not ready"; the kind is in the server log)
        return "down"
    return "ok"


def router() -> APIRouter:
    api = APIRouter(tags=["health"])
    api.add_api_route("/healthz", live, methods=["GET"], response_model=Health, summary="Liveness")
    api.add_api_route("/readyz", ready, methods=["GET"], response_model=Health, summary="Readiness: Redis and store",
                      responses=problem_responses(503))
    return api
