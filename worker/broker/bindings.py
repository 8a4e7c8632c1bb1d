"""kombu's binding tables, readable by every Celery client: members in kombu's default separator.

kombu records each queue bound to an exchange as a member `routing_key<sep>pattern<sep>queue` of the Redis set
`_kombu.binding.<exchange>`, and the publisher of a message (or of a control command's reply) reads the table to
route it. Flower, `celery inspect` and celery-node write and read it with kombu's default separator. Workers
before issue 9 wrote `:` instead (the `sep` transport option, which also named the priority lists); any client
reading such a member with the other separator failed with `ValueError: not enough values to unpack`.

So a worker converts the old members when it connects (`migrate_legacy_members`), and reads tables tolerantly
(`parse_member`): an old member is understood, an unreadable one skipped instead of breaking every publish to
that exchange.
"""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["KOMBU_SEP", "LEGACY_SEP", "TABLE_PATTERNS", "migrate_legacy_members", "parse_member"]

log = structlog.get_logger(__name__)

KOMBU_SEP = "\x06\x16"
"""kombu's `Channel.sep`: what every client assumes."""
LEGACY_SEP = ":"
"""What this project's workers wrote before issue 9."""
TABLE_PATTERNS = ("_kombu.binding.*", "_kombu.binding_permanent.*")
"""The sets holding binding members (kombu 5.7 copies permanent bindings into the second)."""

Binding = tuple[str, str, str]


def parse_member(member: str, sep: str = KOMBU_SEP) -> Binding | None:
    """(routing key, pattern, queue) of one member in either separator, None when neither reads it."""
    parts = member.split(sep)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if sep not in member:
        legacy = member.split(LEGACY_SEP)
        if len(legacy) == 3:
            return legacy[0], legacy[1], legacy[2]
    return None


def migrate_legacy_members(client: Any, *, sep: str = KOMBU_SEP, key_prefix: str = "") -> int:
    """Rewrite old-separator members in kombu's format (or drop those no client can read); how many changed.

    `client` may prefix keys itself (kombu's `global_keyprefix`); SCAN's pattern is not prefixed by it, so the
    prefix is added to the pattern and taken off the keys found. Safe to run from many workers at once: each
    change is SADD then SREM of the same member, both idempotent.
    """
    changed = 0
    for pattern in TABLE_PATTERNS:
        for raw_key in client.scan_iter(match=key_prefix + pattern, count=500):
            key = _text(raw_key).removeprefix(key_prefix)
            if _text(client.type(key)) != "set":
                continue
            for raw in client.smembers(key):
                member = _text(raw)
                if sep in member:
                    continue
                binding = parse_member(member, sep)
                pipe = client.pipeline()
                if binding is not None:
                    pipe.sadd(key, sep.join(binding))
                pipe.srem(key, raw)
                pipe.execute()
                changed += 1
                log.info("broker.binding_migrated", table=key, member=member, readable=binding is not None)
    return changed


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
