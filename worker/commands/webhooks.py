"""`llavaguard webhooks list|replay|enable|wait|secret|callback-secret`: the webhook outbox, and secrets."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

TIME_FIELDS = ("created_at", "next_attempt_at", "last_attempt_at", "at")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("webhooks", help="list, replay and manage webhook deliveries")
    verbs = parser.add_subparsers(required=True, metavar="VERB")

    listing = verbs.add_parser("list", help="recent deliveries with their attempts, newest first")
    listing.add_argument("--failed", action="store_true", help="only dead-lettered deliveries")
    listing.add_argument("--disabled", action="store_true", help="the endpoints disabled after a 410 instead")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=run_list)

    replay = verbs.add_parser("replay", help="schedule a dead-lettered (or delivered) delivery again, now")
    replay.add_argument("id")
    replay.set_defaults(handler=run_replay)

    enable = verbs.add_parser("enable", help="re-enable an endpoint that was disabled after answering 410 Gone")
    enable.add_argument("url")
    enable.set_defaults(handler=run_enable)

    wait = verbs.add_parser("wait", help="wait until no delivery is due or being sent (exit 1 on timeout)")
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (default: %(default)s)")
    wait.set_defaults(handler=run_wait)

    secret = verbs.add_parser("secret", help="print a new random secret for LLAVAGUARD_WEBHOOK_SECRET")
    secret.set_defaults(handler=run_secret)

    callback = verbs.add_parser("callback-secret", help="the secret(s) verifying an owner's callback_url deliveries")
    callback.add_argument("--key-id", help="an owner's key id (key_...), or 'sdk' for SDK submissions; "
                                           "default: every configured API key and the SDK")
    callback.set_defaults(handler=run_callback_secret)


def run_list(args: argparse.Namespace) -> int:
    outbox = _outbox()
    try:
        if args.disabled:
            for url, info in outbox.disabled().items():
                _print({"url": url, **info})
            return 0
        for delivery in outbox.recent(limit=args.limit, failed=args.failed):
            _print({**delivery.summary(), "attempts": outbox.attempts(delivery.id)})
    finally:
        outbox.close()
    return 0


def run_replay(args: argparse.Namespace) -> int:
    outbox = _outbox()
    try:
        state = outbox.replay(args.id, now=time.time())
        delivery = outbox.get(args.id)
        disabled = delivery is not None and outbox.is_disabled(delivery.url)
    finally:
        outbox.close()
    if state != "replayed":
        _print({"id": args.id, "replayed": False, "state": state})
        return 1
    note = {"warning": "its endpoint is disabled: `llavaguard webhooks enable URL` first"} if disabled else {}
    _print({"id": args.id, "replayed": True, "state": "pending", **note})
    return 0


def run_enable(args: argparse.Namespace) -> int:
    outbox = _outbox()
    try:
        was_disabled = outbox.enable(args.url)
    finally:
        outbox.close()
    _print({"url": args.url, "enabled": True, "was_disabled": was_disabled})
    return 0


def run_wait(args: argparse.Namespace) -> int:
    outbox = _outbox()
    deadline = time.monotonic() + args.timeout
    try:
        while (outstanding := outbox.outstanding()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        outbox.close()
    _print({"outstanding": outstanding})
    return 1 if outstanding else 0


def run_secret(args: argparse.Namespace) -> int:
    from worker.notify.signing import new_secret

    print(new_secret())
    return 0


def run_callback_secret(args: argparse.Namespace) -> int:
    from worker.composition import callback_secrets
    from worker.owners import SDK_OWNER, key_id
    from worker.settings import load_settings

    settings = load_settings()
    secrets = callback_secrets(settings)
    if not secrets.configured:
        _print({"error": "set LLAVAGUARD_CALLBACK_SECRET (or LLAVAGUARD_WEBHOOK_SECRET): callbacks are not signed"})
        return 1
    owners = [args.key_id] if args.key_id else [
        *dict.fromkeys(key_id(k) for k in [*settings.api_keys, *settings.api_admin_keys]), SDK_OWNER]
    for owner in owners:
        mine = secrets.secrets_for(None if owner == SDK_OWNER else owner)
        _print({"key_id": owner, "secret": mine[0], "secrets": mine})
    return 0


def _outbox() -> Any:
    from worker.composition import outbox
    from worker.settings import load_settings

    return outbox(load_settings())


def _print(record: dict[str, Any]) -> None:
    print(json.dumps(_readable(record)), flush=True)


def _readable(value: Any) -> Any:
    """Unix times as ISO 8601, recursively (attempt records too)."""
    if isinstance(value, list):
        return [_readable(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: datetime.fromtimestamp(item, UTC).isoformat() if key in TIME_FIELDS and isinstance(item, float)
        else _readable(item)
        for key, item in value.items()
    }
