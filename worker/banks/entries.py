"""What a bank is and what its entries look like: names, actions, hash types, and the validation of each.

A leaf of the banks package: no Redis, no I/O. Everything an operator types or a hash file carries passes
through here before it is stored, so a stored entry is always a normalised (lower-case hex) hash of a known
type; `ValueError` messages say what was wrong without echoing more than a short prefix of the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from worker.categories import Category, category_for_code

Action = Literal["block", "allow"]
ACTIONS: tuple[Action, ...] = ("block", "allow")
HashType = Literal["pdq", "sha256", "md5"]
HASH_TYPES: tuple[HashType, ...] = ("pdq", "sha256", "md5")

HEX_LENGTH: dict[HashType, int] = {"pdq": 64, "sha256": 64, "md5": 32}
ALIASES: dict[str, HashType] = {
    "pdq": "pdq", "sha256": "sha256", "sha-256": "sha256", "md5": "md5",
    "video_md5": "md5", "vmd5": "md5",  # ThreatExchange / HMA names for the MD5 of a file's bytes
}

BLOCK_PDQ_DISTANCE = 31
"""HMA's confident match (`PDQ_CONFIDENT_MATCH_THRESHOLD` in python-threatexchange)."""
ALLOW_PDQ_DISTANCE = 16
"""Stricter for allow banks: an allow match lets content through unjudged, so a look-alike must be closer."""
MAX_PDQ_DISTANCE = 63
"""The index probes every segment within distance/16 (worker/banks/index.py); beyond 63 that gets costly and
matches little that is still the same picture."""
MAX_ENTRY_ID_CHARS = 200

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class BankConfig:
    """A bank's settings; its entries live beside it (worker/banks/store.py)."""

    name: str
    action: Action
    category: Category | None
    """`block` banks: the category their matches are rated Unsafe with; `allow` banks: None."""
    pdq_distance: int

    def to_json(self) -> dict[str, object]:
        return {"action": self.action, "category": self.category, "pdq_distance": self.pdq_distance}

    @classmethod
    def from_json(cls, name: str, data: dict[str, object]) -> BankConfig:
        """ValueError for a stored config that is not one (edited by hand, or by a newer version)."""
        try:
            category = data.get("category")
            return make_config(name, str(data["action"]), str(category) if category else None,
                               int(str(data["pdq_distance"])))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"bank {name[:70]!r}: the stored config is unreadable ({exc!r})") from None


@dataclass(frozen=True)
class Entry:
    hash_type: HashType
    value: str
    """Lower-case hex of `HEX_LENGTH[hash_type]` characters."""
    entry_id: str = ""
    """The operator's id for it (e.g. ThreatExchange's), or empty."""

    @property
    def key(self) -> str:
        return f"{self.hash_type}:{self.value}"


def check_name(name: str) -> str:
    """Bank names become part of Redis keys and log lines: 1-64 of [A-Za-z0-9_-], starting alphanumeric."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"bank name {name[:70]!r} must be 1-64 characters of A-Z a-z 0-9 _ -, starting with a "
                         "letter or digit")
    return name


def make_config(name: str, action: str, category: str | None, pdq_distance: int | None) -> BankConfig:
    """Validate what `banks create` was given; `category` is a code (`O4`) or the full category string."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action[:20]!r}")
    chosen: Category | None = None
    if action == "block":
        if not category:
            raise ValueError("a block bank needs --category (O1 ... O9)")
        chosen = _category(category)
    elif category:
        raise ValueError("an allow bank has no category (its matches are Safe)")
    distance = pdq_distance if pdq_distance is not None else (
        BLOCK_PDQ_DISTANCE if action == "block" else ALLOW_PDQ_DISTANCE)
    if not 0 <= distance <= MAX_PDQ_DISTANCE:
        raise ValueError(f"pdq distance must be 0..{MAX_PDQ_DISTANCE}, not {distance}")
    return BankConfig(check_name(name), "block" if action == "block" else "allow", chosen, distance)


def _category(text: str) -> Category:
    code = text.split(":", 1)[0]
    try:
        category = category_for_code(code)
    except KeyError:
        raise ValueError(f"unknown category {text[:40]!r}: expected O1 ... O9") from None
    if category.startswith("NA"):
        raise ValueError("a block bank's category is one of O1 ... O9")
    return category


def make_entry(hash_type: str, value: str, entry_id: str = "") -> Entry:
    """A validated entry; ValueError says which part is wrong."""
    kind = ALIASES.get(hash_type.strip().lower())
    if kind is None:
        raise ValueError(f"unsupported hash type {hash_type[:20]!r} (supported: pdq, sha256, md5)")
    hexed = value.strip().lower()
    if len(hexed) != HEX_LENGTH[kind] or not _HEX.fullmatch(hexed):
        raise ValueError(f"a {kind} hash is {HEX_LENGTH[kind]} hex characters, not {value[:70]!r}")
    entry_id = entry_id.strip()
    if len(entry_id) > MAX_ENTRY_ID_CHARS or not entry_id.isprintable():
        raise ValueError(f"an entry id is at most {MAX_ENTRY_ID_CHARS} printable characters")
    return Entry(kind, hexed, entry_id)
