"""Checks on the raw bytes of a queued message, before anything trusts them.

kombu decodes whatever content type a message claims (`application/data` and `application/text` bypass
`accept_content`), inflates a `compression` header without a bound, and Celery dies on an envelope that is not
protocol 2; a message that kills the consumer goes back to the queue and kills the next one. So every message
is checked here, in order of cost: size, envelope JSON, content type and encoding, compression, body shape,
task name. This module must never decompress, never parse more than `max_bytes`, and never raise on any input.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

Reason = Literal["not_json", "content_type", "compressed", "too_large", "body_invalid", "unknown_task"]
REASONS = ("not_json", "content_type", "compressed", "too_large", "body_invalid", "unknown_task", "item_invalid",
           "missing_id")
"""Why something was dead-lettered, a bounded set (a metric label); `item_invalid` is a batch item or payload
without a usable id, `missing_id` a request payload with no `id` at all (worker/broker/verdicts.py): the worker
never invents one, since its producer could never learn it."""


@dataclass(frozen=True)
class Rejection:
    """A message that must not reach Celery; `body` is its decoded `[args, kwargs, embed]` when still readable."""

    reason: Reason
    detail: str
    body: list[Any] | None = None


class Refused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def inspect(
    raw: bytes, *, max_bytes: int, known_tasks: frozenset[str], tasks: bool = True
) -> dict[str, Any] | Rejection:
    """The decoded envelope, ready for kombu, or why it is refused. `tasks=False` is for queues that carry
    kombu messages but not Celery tasks (control-command replies): everything but the task checks applies."""
    if len(raw) > max_bytes:
        return Rejection("too_large", f"{len(raw)} bytes, over the limit of {max_bytes}")
    try:
        envelope = _envelope(raw)
    except Refused as exc:
        return Rejection(exc.reason, exc.detail)
    try:
        _check_encoding(envelope)
        if not tasks:
            return envelope
        _check_task_headers(envelope)
        body = decode_body(envelope)
    except Refused as exc:
        return Rejection(exc.reason, exc.detail, _readable_body(envelope, exc.reason))
    task = envelope["headers"]["task"]
    if task not in known_tasks:
        return Rejection("unknown_task", f"task {task[:100]!r} is not one this worker runs", body)
    return envelope


def _envelope(raw: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refused("not_json", f"not a JSON message: {type(exc).__name__}") from None
    if not isinstance(envelope, dict):
        raise Refused("not_json", f"a JSON {type(envelope).__name__}, not an object")
    headers, properties = envelope.get("headers"), envelope.get("properties")
    if not isinstance(headers, dict) or not isinstance(properties, dict):
        raise Refused("body_invalid", "headers or properties missing")
    if not isinstance(properties.get("delivery_tag"), str) or not isinstance(properties.get("delivery_info"), dict):
        raise Refused("body_invalid", "properties lack a delivery tag or delivery info")
    return envelope


def _check_task_headers(envelope: dict[str, Any]) -> None:
    headers = envelope["headers"]
    if not isinstance(headers.get("task"), str) or not isinstance(headers.get("id"), str):
        raise Refused("body_invalid", "headers lack a task name or an id (not Celery protocol 2)")


def _check_encoding(envelope: dict[str, Any]) -> None:
    if envelope.get("content-type") != "application/json":
        raise Refused("content_type", f"content type {str(envelope.get('content-type'))[:60]!r}, not application/json")
    if envelope.get("content-encoding") != "utf-8":
        raise Refused("content_type", f"content encoding {str(envelope.get('content-encoding'))[:60]!r}, not utf-8")
    if "compression" in envelope["headers"]:
        raise Refused("compressed", "compressed messages are refused (our producers never compress)")


def decode_body(envelope: dict[str, Any]) -> list[Any]:
    """The message's `[args, kwargs, embed]`; raises Refused when it is not that shape."""
    body = envelope.get("body")
    if envelope["properties"].get("body_encoding") != "base64" or not isinstance(body, str):
        raise Refused("body_invalid", "body is not a base64 string")
    try:
        decoded = json.loads(base64.b64decode(body, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refused("body_invalid", f"body is not base64 JSON: {type(exc).__name__}") from None
    shape_ok = (
        isinstance(decoded, list) and len(decoded) == 3 and isinstance(decoded[0], list)
        and isinstance(decoded[1], dict) and isinstance(decoded[2], dict)
    )
    if not shape_ok:
        raise Refused("body_invalid", "body is not [args, kwargs, embed] (Celery protocol 2)")
    return list(decoded)


def _readable_body(envelope: dict[str, Any], reason: Reason) -> list[Any] | None:
    """The body of a refused message when it can still be read safely (never when compressed)."""
    if reason == "compressed":
        return None
    try:
        return decode_body(envelope)
    except Refused:
        return None
