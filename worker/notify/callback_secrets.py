"""Per-owner callback secrets: a request's `callback_url` is signed with its owner's secret, never the operator's.

Each owner's secret is derived, not stored: HMAC-SHA256(master key, label || owner), output as a `whsec_`
secret. The masters are `LLAVAGUARD_CALLBACK_SECRET` (comma-separated: each signs, for rotation, like
WEBHOOK_SECRET). A deployment without it derives from `LLAVAGUARD_WEBHOOK_SECRET` under a distinct label, so
callbacks keep working after an upgrade and the operator's secret itself never signs a callback nor can be
recovered from a derived one. Whoever verifies their callbacks therefore cannot forge the operator's events or
another owner's callbacks. This module never logs a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from worker.notify.signing import SECRET_PREFIX, Signer, parse_secret
from worker.owners import SDK_OWNER

CALLBACK_LABEL = b"llavaguard callback secret v1\x00"
"""Derivation from LLAVAGUARD_CALLBACK_SECRET."""
FROM_WEBHOOK_LABEL = b"llavaguard callback secret from the webhook secret v1\x00"
"""Derivation from LLAVAGUARD_WEBHOOK_SECRET when no callback secret is set (never the secret itself)."""


def derive_key(master: bytes, label: bytes, owner: str | None) -> bytes:
    return hmac.new(master, label + (owner or SDK_OWNER).encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True)
class CallbackSecrets:
    masters: tuple[bytes, ...]
    label: bytes

    @classmethod
    def derived(cls, callback_secrets: Sequence[str], webhook_secrets: Sequence[str]) -> CallbackSecrets:
        """From LLAVAGUARD_CALLBACK_SECRET when set, else derived from LLAVAGUARD_WEBHOOK_SECRET."""
        if callback_secrets:
            return cls.of(callback_secrets, CALLBACK_LABEL)
        return cls.of(webhook_secrets, FROM_WEBHOOK_LABEL)

    @classmethod
    def of(cls, secrets: Sequence[str], label: bytes) -> CallbackSecrets:
        return cls(tuple(parse_secret(s, n) for n, s in enumerate(secrets, start=1)), label)

    @property
    def configured(self) -> bool:
        return bool(self.masters)

    def secrets_for(self, owner: str | None) -> list[str]:
        """The owner's `whsec_` secrets, one per master (the first is the current one)."""
        return [SECRET_PREFIX + base64.b64encode(derive_key(m, self.label, owner)).decode("ascii")
                for m in self.masters]

    def signer_for(self, owner: str | None) -> Signer | None:
        if not self.masters:
            return None
        return Signer([derive_key(m, self.label, owner) for m in self.masters])
