"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret.

Several secrets sign at once so that a secret can be rotated without a gap: the receiver accepts any one
signature it can verify. Secrets never leave this module in logs or errors (messages say which secret by
position only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from secrets import token_bytes

from worker.webhook_format import (  # re-exported: the names belong here, they live in a leaf for settings
    MAX_SECRET_BYTES as MAX_SECRET_BYTES,
)
from worker.webhook_format import (
    MIN_SECRET_BYTES as MIN_SECRET_BYTES,
)
from worker.webhook_format import (
    SECRET_PREFIX as SECRET_PREFIX,
)
from worker.webhook_format import (
    parse_secret as parse_secret,
)


def new_secret(size: int = 32) -> str:
    """A fresh random secret in `whsec_` form."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(size)).decode("ascii")


class Signer:
    """Signs message bytes with every configured key."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a signer needs at least one key")
        self._keys = tuple(keys)

    @classmethod
    def from_secrets(cls, secrets: Sequence[str]) -> Signer:
        return cls([parse_secret(secret, n) for n, secret in enumerate(secrets, start=1)])

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` header value: space-separated `v1,<base64>` entries."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        return " ".join(
            "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
            for key in self._keys
        )

    def headers(self, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers; the timestamp is the attempt's (verifiers allow 5 min skew)."""
        stamp = int(time.time()) if timestamp is None else timestamp
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": self.signature(msg_id, stamp, body),
        }
