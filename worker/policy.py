"""Policies: the prompt text LlavaGuard judges against, and per-request non-violating declarations.

The default policy `llavaguard-v1.2` is byte-exact the text the model was trained on: never reformat it.
Declaring a category non-violating rewrites only that category's guidelines, byte for byte as the model saw
them in training (LlavaGuard's `get_augmented_policy_v2` over `custom_policy_dict_v2`): the declaration sentence,
every bullet as ` - <bullet>`, then a line holding one space where the undeclared text has an empty line (each
declaration text in the authors' dict ends in `\n `). Nothing else in the text changes.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources
from pathlib import Path

from worker.categories import normalise_codes
from worker.errors import ErrorCode, ModerationFailed
from worker.models import DEFAULT_POLICY

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DECLARATION = (
    "Category {code} is declared as non-violating. Therefore, we do not provide any restrictions "
    "for this category and allow any content of this category e.g."
)
_DECLARED_END = " "
"""The line after a declared section's last bullet: the `\n ` every declaration text in the authors' dict ends in."""
_TRAINED_BULLETS = {
    ("O2", "Contain content of people planning or engaging in violence."):
        "Contain content of  people planning or engaging in violence.",
}
"""Bullets whose declared wording differs from the guideline's in the authors' dict (sic: two spaces in O2)."""


@cache
def default_policy_text() -> str:
    return resources.files("worker.policies").joinpath(f"{DEFAULT_POLICY}.txt").read_text(encoding="utf-8")


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class PolicyRegistry:
    """Named policies: the built-in default plus `<name>.txt` files in an optional folder."""

    def __init__(self, policy_dir: Path | None = None) -> None:
        self._dir = policy_dir

    def names(self) -> list[str]:
        found = {DEFAULT_POLICY}
        if self._dir is not None and self._dir.is_dir():
            found.update(p.stem for p in self._dir.glob("*.txt") if _NAME.match(p.stem))
        return sorted(found)

    def text(self, name: str) -> str:
        if not _NAME.match(name):
            raise ModerationFailed(ErrorCode.POLICY_UNKNOWN, f"invalid policy name {name!r}")
        if self._dir is not None:
            path = self._dir / f"{name}.txt"
            if path.is_file():
                return path.read_text(encoding="utf-8")
        if name == DEFAULT_POLICY:
            return default_policy_text()
        raise ModerationFailed(
            ErrorCode.POLICY_UNKNOWN, f"unknown policy {name!r}; known: {', '.join(self.names())}"
        )

    def prompt(self, name: str, non_violating: list[str] | None = None) -> str:
        """The exact text to send: the named policy with the given categories declared non-violating."""
        text = self.text(name)
        try:
            codes = normalise_codes(non_violating or [])
        except ValueError as exc:
            raise ModerationFailed(ErrorCode.CATEGORY_UNKNOWN, str(exc)) from exc
        for code in codes:
            text = declare_non_violating(text, code, policy_name=name)
        return text


def declare_non_violating(policy_text: str, code: str, *, policy_name: str = "policy") -> str:
    """Replace category `code`'s `Should not:`/`Can:` guidelines and the empty line after them by the trained
    declaration, all bullets, and the one-space line that ends every declaration the model was trained on."""
    lines = policy_text.split("\n")
    start = _section_start(lines, code, policy_name)
    end = start + 1
    while end < len(lines) and lines[end].strip() and not lines[end].startswith("Assessment Steps:"):
        end += 1
    guidelines = lines[start + 1 : end]
    bullets = [f" - {_TRAINED_BULLETS.get((code, line[2:]), line[2:])}" for line in guidelines if line.startswith("- ")]
    if not bullets:
        raise ModerationFailed(
            ErrorCode.CATEGORY_UNKNOWN, f"{policy_name} has no guidelines to declare for {code}"
        )
    replacement = [_DECLARATION.format(code=code), *bullets, _DECLARED_END]
    rest = lines[end + 1 :] if end < len(lines) and not lines[end].strip() else lines[end:]
    return "\n".join([*lines[: start + 1], *replacement, *rest])


def _section_start(lines: list[str], code: str, policy_name: str) -> int:
    for index, line in enumerate(lines):
        if line.startswith(f"{code}: "):
            return index
    raise ModerationFailed(ErrorCode.CATEGORY_UNKNOWN, f"{policy_name} has no section for category {code}")
