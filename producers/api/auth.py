"""API keys: `Authorization: Bearer <key>`, checked against `LLAVAGUARD_API_KEYS` in constant time.

The API never runs open: `create_app` refuses to build without keys. Keys are compared with
`hmac.compare_digest` against every configured key (no early exit), so timing reveals neither a key nor
which key matched. A missing or wrong key is a 401 problem with `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from producers.api.problems import ApiProblem

bearer = HTTPBearer(
    auto_error=False, scheme_name="ApiKey",
    description="One of the keys in LLAVAGUARD_API_KEYS, sent as `Authorization: Bearer <key>`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

Check = Callable[[HTTPAuthorizationCredentials | None], Awaitable[None]]


def key_matches(presented: str, keys: list[str]) -> bool:
    given = presented.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode("utf-8"))
    return found


def api_key_check(keys: list[str]) -> Check:
    """A FastAPI dependency that lets a request through only with one of `keys`."""
    configured = list(keys)

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if credentials is None:
            raise ApiProblem(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'",
                             headers=_CHALLENGE)
        if not key_matches(credentials.credentials, configured):
            raise ApiProblem(401, "unauthorized", "the API key is not valid", headers=_CHALLENGE)

    return check
