"""Who owns a moderation: the non-secret key id of the API key that submitted it.

A key id is `key_` + the first 16 hex digits of the key's SHA-256: stable, short, safe to store on requests,
verdicts and webhook deliveries, and computable by the operator (`printf %s "$KEY" | sha256sum | cut -c1-16`).
Never store or log the key itself. Submissions through the SDK (trusted backends with Redis access) have no
owner; their callback secret is the `sdk` one.
"""

from __future__ import annotations

import hashlib

KEY_ID_PREFIX = "key_"
SDK_OWNER = "sdk"
"""The owner label of submissions without an owner (never a key id: those start with `key_`)."""


def key_id(api_key: str) -> str:
    return KEY_ID_PREFIX + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]
