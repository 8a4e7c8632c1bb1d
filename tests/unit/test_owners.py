"""Issue 8 items 5 and 10, the derivations: key ids, unguessable moderation ids, request fingerprints,
per-owner callback secrets (verified with the independent `standardwebhooks` library)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from producers.api.auth import matching_caller
from producers.ids import keyed_moderation_id, request_fingerprint, submission_record
from worker import composition
from worker.models import ImageInfo, ImageRef, ModerationRequest, PolicyRef, Verdict
from worker.notify.callback_secrets import CALLBACK_LABEL, FROM_WEBHOOK_LABEL, CallbackSecrets
from worker.notify.signing import new_secret, parse_secret
from worker.owners import key_id
from worker.settings import load_settings

BODY = b'{"type":"moderation.unsafe","data":{"id":"m1"}}'


def test_a_key_id_is_a_short_public_digest_never_the_key() -> None:
    assert key_id("change-me") == "key_" + hashlib.sha256(b"change-me").hexdigest()[:16]
    assert key_id("change-me") != key_id("change-me2") and "change-me" not in key_id("change-me")


def test_keyed_ids_depend_on_secret_owner_and_key_and_are_not_the_old_uuid5() -> None:
    secret = b"x" * 32
    base = keyed_moderation_id(secret, "key_a", "upload-123")
    assert base == keyed_moderation_id(secret, "key_a", "upload-123") and len(base) == 32
    others = {keyed_moderation_id(secret, "key_b", "upload-123"), keyed_moderation_id(secret, None, "upload-123"),
              keyed_moderation_id(b"y" * 32, "key_a", "upload-123"), keyed_moderation_id(secret, "key_a", "upload-12")}
    assert base not in others and len(others) == 4
    assert base != uuid.uuid5(uuid.UUID("8d3f6c1e-5a0b-4c55-9a43-2f7d61c0b9e4"), "upload-123").hex
    # no separator trick makes two (owner, key) pairs collide
    assert keyed_moderation_id(secret, "key_a", "b\nc") != keyed_moderation_id(secret, "key_a\nb", "c")


def test_the_fingerprint_covers_the_image_and_every_option() -> None:
    def fingerprint(**changes: object) -> str:
        fields: dict[str, object] = {"id": "m", "image": ImageRef(url="https://a.example/1.png"),
                                     "metadata": {"a": 1}, **changes}
        return request_fingerprint(ModerationRequest.model_validate(fields))

    base = fingerprint()
    assert base == fingerprint(id="other", created_at=datetime(2020, 1, 1, tzinfo=UTC))
    changed = [fingerprint(image=ImageRef(url="https://a.example/2.png")), fingerprint(image=ImageRef(data=b"1")),
               fingerprint(policy="strict"), fingerprint(non_violating=["O6"]), fingerprint(metadata={"a": 2}),
               fingerprint(callback_url="https://cb.example/"), fingerprint(priority=3)]
    assert base not in changed and len(set(changed)) == len(changed)
    assert submission_record(ModerationRequest(id="m1", image=ImageRef(data=b"1")), keyed=False) is None


def test_admin_keys_are_callers_too_and_a_stranger_is_none() -> None:
    user = matching_caller("k1", ["k1", "k2"], ["adm"])
    admin = matching_caller("adm", ["k1", "k2"], ["adm"])
    assert user is not None and user.key_id == key_id("k1") and not user.admin
    assert admin is not None and admin.admin and admin.may_read(key_id("k1")) and admin.may_read(None)
    assert user.may_read(key_id("k1")) and not user.may_read(key_id("k2")) and not user.may_read(None)
    assert matching_caller("k3", ["k1", "k2"], ["adm"]) is None


def test_callback_secrets_are_per_owner_and_never_the_operators() -> None:
    operator = new_secret()
    derived = composition.callback_secrets(load_settings(webhook_secret=operator))
    assert derived.label == FROM_WEBHOOK_LABEL
    a, b, sdk = (derived.secrets_for(owner)[0] for owner in ("key_a", "key_b", None))
    assert len({a, b, sdk, operator}) == 4 and len(parse_secret(a)) == 32
    headers = derived.signer_for("key_a").headers("msg_1", BODY)  # type: ignore[union-attr]
    assert Webhook(a).verify(BODY, headers)["data"]["id"] == "m1"
    for wrong in (b, sdk, operator):
        with pytest.raises(WebhookVerificationError):
            Webhook(wrong).verify(BODY, headers)


def test_a_callback_master_replaces_the_fallback_and_rotates() -> None:
    old, new = new_secret(), new_secret()
    operator = new_secret()
    own = composition.callback_secrets(load_settings(webhook_secret=operator, callback_secret=f"{new},{old}"))
    fallback = composition.callback_secrets(load_settings(webhook_secret=operator))
    assert own.label == CALLBACK_LABEL and own.secrets_for("key_a")[0] != fallback.secrets_for("key_a")[0]
    headers = own.signer_for("key_a").headers("msg_1", BODY)  # type: ignore[union-attr]
    for secret in own.secrets_for("key_a"):  # while rotating, both derived secrets verify
        Webhook(secret).verify(BODY, headers)
    assert CallbackSecrets.of([new], CALLBACK_LABEL).secrets_for("key_a")[0] == own.secrets_for("key_a")[0]
    assert not composition.callback_secrets(load_settings()).configured


def test_verdicts_stored_before_owners_existed_still_load() -> None:
    now = datetime.now(UTC)
    old = Verdict(id="m", status="failed", policy=PolicyRef(name="p"), image=ImageInfo(),
                  error={"code": "image_empty", "message": "x"}, created_at=now, completed_at=now)  # type: ignore[arg-type]
    body = old.model_dump(mode="json")
    del body["owner"]
    assert Verdict.model_validate(body).owner is None
    assert ModerationRequest.model_validate({"id": "m", "image": {"url": "https://a.example/x"}}).owner is None
