"""Our Standard Webhooks signatures, verified by the independent `standardwebhooks` implementation."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from worker.errors import SettingsError
from worker.notify.signing import Signer, new_secret, parse_secret
from worker.settings import load_settings

BODY = '{"type":"moderation.unsafe","timestamp":"2025-01-01T00:00:00Z","data":{"id":"m1","note":"café"}}'.encode()


def test_a_signature_verifies_with_standardwebhooks() -> None:
    secret = new_secret()
    headers = Signer.from_secrets([secret]).headers("msg_abc", BODY)
    assert Webhook(secret).verify(BODY, headers)["data"]["note"] == "café"


def test_every_rotated_secret_verifies_and_a_stranger_does_not() -> None:
    old, new = new_secret(), new_secret(24)
    headers = Signer.from_secrets([old, new]).headers("msg_abc", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_tampered_body_or_id_fails_verification() -> None:
    secret = new_secret()
    headers = Signer.from_secrets([secret]).headers("msg_abc", BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"m1", b"m2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_other"})


def test_the_timestamp_is_the_attempts_and_signed() -> None:
    secret = new_secret()
    headers = Signer.from_secrets([secret]).headers("msg_abc", BODY)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    stale = Signer.from_secrets([secret]).headers("msg_abc", BODY, timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, stale)


@pytest.mark.parametrize("bad", [
    "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",   # no prefix
    "whsec_",                              # empty
    "whsec_" + base64.b64encode(b"short").decode(),  # too short
    "whsec_not*base64*at*all*but*long*enough*",
    "whsec_" + base64.b64encode(bytes(65)).decode(),  # too long
])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="whsec_<base64"):
        parse_secret(bad)


def test_unpadded_secrets_are_accepted_like_standardwebhooks_does() -> None:
    key = bytes(range(32))
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert parse_secret(unpadded) == key


def test_a_bad_secret_fails_settings_in_one_line_naming_the_variable_without_echoing_it() -> None:
    leaked = "whsec_topsecretvalue"
    with pytest.raises(SettingsError) as info:
        load_settings(webhook_secret=f"{new_secret()},{leaked}")
    message = str(info.value)
    assert message.startswith("LLAVAGUARD_WEBHOOK_SECRET:") and "secret #2" in message
    assert "topsecret" not in message and "\n" not in message


def test_an_endpoint_without_a_secret_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match=r"^LLAVAGUARD_WEBHOOK_SECRET: .*required"):
        load_settings(webhook_url="https://hooks.example.com/x")


def test_secrets_never_show_in_the_settings_repr() -> None:
    secret = new_secret()
    settings = load_settings(webhook_url="https://a.example/x,https://b.example/y", webhook_secret=secret)
    assert secret not in repr(settings) and settings.webhook_url == ["https://a.example/x", "https://b.example/y"]
