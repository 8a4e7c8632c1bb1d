"""One webhook attempt over HTTP: sign, POST once, classify the answer. Never follows a redirect.

Request callback URLs are user input: they go through intake's `PinnedHttp` with the same `AddressGuard`
as image fetches, checked at send time against the address actually connected to. Endpoints from
LLAVAGUARD_WEBHOOK_URL are the operator's own configuration (often an internal service), so they are sent
through a `PinnedHttp` whose guard allows every network and plain http. A refused target is dead-lettered
at once: it would be refused on every later attempt too.

Operator endpoints are signed with LLAVAGUARD_WEBHOOK_SECRET; a callback only ever with its owner's
callback secret (`callback_secrets`), so no callback receiver can forge an operator event.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from worker.errors import ErrorCode, ModerationFailed
from worker.intake import AddressGuard, PinnedHttp
from worker.intake.addresses import IPNetwork
from worker.notify.callback_secrets import CallbackSecrets
from worker.notify.schedule import Outcome, classify_status, parse_retry_after
from worker.notify.signing import Signer

EVERY_NETWORK = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
RETRYABLE_CODES = frozenset({ErrorCode.FETCH_TIMEOUT, ErrorCode.FETCH_CONNECTION_FAILED, ErrorCode.FETCH_DNS_FAILED})
"""Transport failures worth another try; every other refusal (address, scheme, URL) is final."""
CONTENT_TYPE = {"Content-Type": "application/json"}
RECEIVER_BODY_BYTES = 1024
"""How much of a receiver's answer is read (and thrown away): only its status and headers matter."""


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status: int | None
    latency_ms: float
    error: str | None = None
    retry_after_s: float | None = None


class WebhookSender:
    """Thread-safe: one per worker process, shared by the sending threads."""

    def __init__(
        self, guarded: PinnedHttp, trusted: PinnedHttp, signer: Signer | None, *, timeout_s: float,
        callbacks: CallbackSecrets | None = None,
    ):
        self.guarded = guarded
        self.trusted = trusted
        self.signer = signer
        """The operator's (WEBHOOK_SECRET): endpoints in WEBHOOK_URL only."""
        self.callbacks = callbacks or CallbackSecrets((), b"")
        self.timeout_s = timeout_s

    @classmethod
    def of(
        cls, *, allowed_networks: Sequence[IPNetwork], allow_http: bool, timeout_s: float,
        webhook_secrets: Sequence[str], callbacks: CallbackSecrets,
    ) -> WebhookSender:
        """Callbacks guarded like image fetches; operator endpoints (WEBHOOK_URL) to every network."""
        def http(guard: AddressGuard, plain_http: bool) -> PinnedHttp:
            return PinnedHttp(guard, allow_http=plain_http, connect_timeout_s=timeout_s, read_timeout_s=timeout_s)

        return cls(
            guarded=http(AddressGuard(allowed_networks), allow_http),
            trusted=http(AddressGuard(EVERY_NETWORK), True),
            signer=Signer.from_secrets(webhook_secrets) if webhook_secrets else None,
            timeout_s=timeout_s, callbacks=callbacks,
        )

    def close(self) -> None:
        self.guarded.close()
        self.trusted.close()

    def send(self, msg_id: str, url: str, body: bytes, *, trusted: bool, owner: str | None = None) -> AttemptResult:
        signer = self.signer if trusted else self.callbacks.signer_for(owner)
        if signer is None:
            return AttemptResult(Outcome.REFUSED, None, 0.0, "neither LLAVAGUARD_CALLBACK_SECRET nor "
                                 "LLAVAGUARD_WEBHOOK_SECRET is set: not sending an unsigned webhook")
        headers = {**CONTENT_TYPE, **signer.headers(msg_id, body)}
        http = self.trusted if trusted else self.guarded
        started = time.monotonic()
        try:
            response = http.request("POST", url, timeout_s=self.timeout_s, headers=headers, body=body,
                                    max_body_bytes=RECEIVER_BODY_BYTES)
        except ModerationFailed as exc:
            outcome = Outcome.RETRY if exc.code in RETRYABLE_CODES else Outcome.REFUSED
            return AttemptResult(outcome, None, _ms_since(started), f"{exc.code}: {exc.message}")
        latency_ms = _ms_since(started)
        outcome = classify_status(response.status)
        if outcome is Outcome.DELIVERED:
            return AttemptResult(outcome, response.status, latency_ms)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return AttemptResult(outcome, response.status, latency_ms, f"HTTP {response.status}", retry_after)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
