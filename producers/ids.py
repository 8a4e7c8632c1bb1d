"""Moderation ids nobody can guess, and the record that scopes an idempotency key to its owner.

Ids without an idempotency key are random. An idempotency key maps to HMAC-SHA256(secret, [purpose, owner,
key]): the same owner and key always give the same id, another owner (another API key) gets another id, and
without the secret nobody can compute anyone's id. The secret is created once in Redis (`SET NX`
`llavaguard:id-secret`) by whichever producer needs it first and cached per process, so it needs no
configuration and every producer (SDK, API, audits) shares it. If Redis loses it a new one is made: repeated
keys and audit reruns then map to new ids (judged once more), stored verdicts keep their ids.

The submission record (`llavaguard:submission:<id>`, beside the enqueued marker) holds the owner and, for
keyed requests, a fingerprint of the request, so a reused key with another image or other options is refused
instead of answered with the first verdict. This module never logs or returns the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable

import redis

from worker.models import ModerationRequest
from worker.queues import ID_SECRET_KEY

SDK_SCOPE = "sdk"
"""The idempotency scope of submissions without an owner (SDK callers); key ids start with `key_`."""


def random_moderation_id() -> str:
    return secrets.token_hex(16)


def keyed_moderation_id(secret: bytes, owner: str | None, idempotency_key: str) -> str:
    """The id of (owner, idempotency key): stable for one deployment, unguessable without its secret."""
    return _hmac_id(secret, ["idempotency", owner or SDK_SCOPE, idempotency_key])


def audit_moderation_id(secret: bytes, policy: str, non_violating: list[str], reference: str) -> str:
    """An audited image's id: the same on every run of the same audit (resumability), unguessable."""
    return _hmac_id(secret, ["audit", policy, ",".join(sorted(non_violating)), reference])


def audit_id_maker(secret: bytes, policy: str, non_violating: list[str]) -> Callable[[str], str]:
    """`audit_moderation_id` for one audit, the shared part of its message hashed once (audits hash millions)."""
    head = json.dumps(["audit", policy, ",".join(sorted(non_violating))], separators=(",", ":"))[:-1] + ","
    start = hmac.new(secret, head.encode(), hashlib.sha256)

    def make(reference: str) -> str:
        mac = start.copy()
        mac.update(json.dumps(reference).encode() + b"]")
        return mac.hexdigest()[:32]

    return make


def retry_moderation_id(secret: bytes, failed_id: str) -> str:
    """The id that judges again the image whose verdict `failed_id` failed: one per failed id, on every run
    (a retry is resumable like the audit), and a retry that fails again has a retry of its own."""
    return _hmac_id(secret, ["retry", failed_id])


def _hmac_id(secret: bytes, parts: list[str]) -> str:
    message = json.dumps(parts, separators=(",", ":")).encode()  # unambiguous: no separator can be forged
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def request_fingerprint(request: ModerationRequest) -> str:
    """What must match for a repeated idempotency key: the image and every option, never the id or time."""
    image = request.image
    what = {
        "image": image.url if image.url is not None else "sha256:" + hashlib.sha256(image.data or b"").hexdigest(),
        "policy": request.policy, "non_violating": sorted(request.non_violating),
        "callback_url": request.callback_url, "metadata": request.metadata, "priority": request.priority,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def submission_record(request: ModerationRequest, *, keyed: bool) -> str | None:
    """The JSON stored beside the marker, or None when there is nothing to keep (an SDK call without key)."""
    if request.owner is None and not keyed:
        return None
    record = {"owner": request.owner, "fingerprint": request_fingerprint(request) if keyed else None}
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def record_owner(record: bytes | str | None) -> str | None:
    """The owner in a stored submission record (None: no record, or an SDK submission)."""
    if record is None:
        return None
    try:
        owner = json.loads(record).get("owner")
    except (ValueError, AttributeError):
        return None
    return owner if isinstance(owner, str) else None


class IdSecret:
    """The deployment's id secret, read (or created) in Redis once per process."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self._redis = client
        self._lock = threading.Lock()
        self._value: bytes | None = None

    def get(self) -> bytes:
        with self._lock:
            if self._value is None:
                pipe = self._redis.pipeline(transaction=True)
                pipe.set(ID_SECRET_KEY, secrets.token_hex(32), nx=True)
                pipe.get(ID_SECRET_KEY)
                value = pipe.execute()[1]
                self._value = value if isinstance(value, bytes) else str(value).encode()
            return self._value
