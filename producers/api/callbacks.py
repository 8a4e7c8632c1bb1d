"""`GET /v1/callback-secret`: the calling key's own secret for verifying its `callback_url` deliveries.

Callbacks are signed per owner (`worker.notify.callback_secrets`), so a key only ever learns its own secret;
the operator's LLAVAGUARD_WEBHOOK_SECRET is never handed out nor derivable from this answer.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from producers.api.auth import caller_of
from producers.api.problems import ApiProblem, problem_responses
from worker.notify.callback_secrets import CallbackSecrets


class CallbackSecret(BaseModel):
    key_id: str
    """The owner recorded on this key's moderations."""
    secret: str
    """Verify callbacks with this `whsec_` secret (any Standard Webhooks library)."""
    secrets: list[str]
    """Every secret that signs (several while the operator rotates); the first is `secret`."""


def router(secrets: CallbackSecrets) -> APIRouter:
    async def callback_secret(request: Request) -> CallbackSecret:
        if not secrets.configured:
            raise ApiProblem(404, "callback_secret_unavailable",
                             "callbacks are not signed here (no LLAVAGUARD_CALLBACK_SECRET or WEBHOOK_SECRET)")
        caller = caller_of(request)
        mine = secrets.secrets_for(caller.key_id)
        return CallbackSecret(key_id=caller.key_id, secret=mine[0], secrets=mine)

    api = APIRouter()
    api.add_api_route("/v1/callback-secret", callback_secret, methods=["GET"], response_model=CallbackSecret,
                      summary="The secret that signs this key's callback_url deliveries",
                      responses=problem_responses(401, 404))
    return api
