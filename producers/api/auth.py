"""API keys: `Authorization: Bearer <key>`, checked against `LLAVAGUARD_API_KEYS` (and
`LLAVAGUARD_API_ADMIN_KEYS`) in constant time; the caller's identity is its key id.

Reviewer keys (`LLAVAGUARD_API_REVIEWER_KEYS`, issue 11) open only the review endpoints and nothing else; a
producer or admin key there is known but not allowed (403), as a reviewer key is unknown to the moderation
endpoints (401). The API never runs open: `create_app` refuses to build without keys. Keys are compared with
`hmac.compare_digest` against every configured key (no early exit), so timing reveals neither a key nor
which key matched. A missing or wrong key is a 401 problem with `WWW-Authenticate: Bearer`. The check puts
the `Caller` (key id, admin or not) on `request.state.caller`; the key itself is never kept.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from producers.api.problems import ApiProblem
from worker.owners import key_id

bearer = HTTPBearer(
    auto_error=False, scheme_name="ApiKey",
    description="One of the keys in LLAVAGUARD_API_KEYS (or LLAVAGUARD_API_ADMIN_KEYS), sent as "
                "`Authorization: Bearer <key>`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

Check = Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[None]]


@dataclass(frozen=True)
class Caller:
    key_id: str
    """The owner recorded on what this key submits."""
    admin: bool
    """An admin key reads every verdict."""

    def may_read(self, owner: str | None) -> bool:
        return self.admin or owner == self.key_id


def matching_caller(presented: str, keys: Sequence[str], admin_keys: Sequence[str] = ()) -> Caller | None:
    """The caller a presented key is, or None; every configured key is compared, matched or not."""
    given = presented.encode("utf-8")
    found: Caller | None = None
    for key, admin in [*((k, False) for k in keys), *((k, True) for k in admin_keys)]:
        if hmac.compare_digest(given, key.encode("utf-8")):
            found = Caller(key_id(key), admin or (found is not None and found.admin))
    return found


def api_key_check(keys: list[str], admin_keys: Sequence[str] = ()) -> Check:
    """A FastAPI dependency that lets a request through only with one of `keys` or `admin_keys`."""
    configured, admins = list(keys), list(admin_keys)

    async def check(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise ApiProblem(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'",
                             headers=_CHALLENGE)
        caller = matching_caller(credentials.credentials, configured, admins)
        if caller is None:
            raise ApiProblem(401, "unauthorized", "the API key is not valid", headers=_CHALLENGE)
        request.state.caller = caller

    return check


def reviewer_key_check(reviewer_keys: Sequence[str], producer_keys: Sequence[str]) -> Check:
    """A FastAPI dependency for the review endpoints: a reviewer key passes, a producer key is 403."""
    reviewers, producers = list(reviewer_keys), list(producer_keys)

    async def check(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise ApiProblem(401, "unauthorized", "send a reviewer key as 'Authorization: Bearer <key>'",
                             headers=_CHALLENGE)
        reviewer = matching_caller(credentials.credentials, reviewers)
        producer = matching_caller(credentials.credentials, producers)  # both compared: no timing tells which
        if reviewer is not None:
            request.state.caller = reviewer
            return
        if producer is not None:
            raise ApiProblem(403, "forbidden", "this key may not review: use a key from LLAVAGUARD_API_REVIEWER_KEYS")
        raise ApiProblem(401, "unauthorized", "the API key is not valid", headers=_CHALLENGE)

    return check


def caller_of(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller
