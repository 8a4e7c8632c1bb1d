"""Thresholds: an operator's numbers for turning a score into a decision, per policy, read once at start.

A policy's thresholds live in a sidecar file next to it, `<policy>.thresholds.json` (in LLAVAGUARD_POLICY_DIR,
or in the package's `worker/policies/`), for example:

    {"unsafe": 0.5, "review": [0.3, 0.7], "categories": {"O4": {"unsafe": 0.4, "review": [0.2, 0.6]}}}

`unsafe` is required; `review` (a closed band) is optional; a category override may set either, and
`"review": null` there switches the band off for that category. Every file is validated when the worker starts
(`ThresholdsInvalid` names the file and the field), never in the middle of a moderation. Nothing here knows
about verdicts: `decider.py` applies these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.categories import category_for_code

SUFFIX = ".thresholds.json"
_POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class ThresholdsInvalid(ValueError):
    """A thresholds file (or the settings) cannot be used; the message names the file and the field."""


class Rule(BaseModel):
    """The numbers of one category override: each unset one falls back to the policy's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unsafe: Probability | None = None
    """Block at or above this score."""
    review: tuple[Probability, Probability] | None = None
    """Send to a human when low <= score <= high (checked before `unsafe`: the band is where no one trusts it)."""

    @field_validator("review")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"the review band's low end {value[0]} is above its high end {value[1]}")
        return value


class PolicyThresholds(Rule):
    """A whole file: the policy's numbers and its category overrides, keyed by code (`O1` .. `O9`, `NA`)."""

    unsafe: Probability
    categories: dict[str, Rule] = Field(default_factory=dict)

    @field_validator("categories", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        codes: dict[str, Any] = {}
        for key, rule in value.items():
            try:
                code = category_for_code(str(key)).split(":", 1)[0]
            except KeyError:
                raise ValueError(f"unknown category {key!r}: expected a code O1 .. O9 or NA") from None
            codes[code] = rule
        return codes

    def rule_for(self, code: str | None) -> tuple[float, tuple[float, float] | None, bool]:
        """(unsafe, review band, whether an override applied) for a verdict of category `code`."""
        override = self.categories.get(code or "")
        if override is None:
            return self.unsafe, self.review, False
        unsafe = self.unsafe if override.unsafe is None else override.unsafe
        review = override.review if "review" in override.model_fields_set else self.review
        return unsafe, review, True


@dataclass(frozen=True)
class ThresholdSet:
    """One policy's thresholds and where they come from: `settings` or `sidecar:<file name>`."""

    rules: PolicyThresholds
    source: str


def from_settings(unsafe: float | None, review: tuple[float, float] | None) -> ThresholdSet | None:
    """LLAVAGUARD_UNSAFE_THRESHOLD / LLAVAGUARD_REVIEW_BAND, or None when the operator set no threshold."""
    if unsafe is None:
        if review is not None:
            raise ThresholdsInvalid("LLAVAGUARD_REVIEW_BAND needs LLAVAGUARD_UNSAFE_THRESHOLD too")
        return None
    try:
        return ThresholdSet(PolicyThresholds(unsafe=unsafe, review=review), "settings")
    except ValidationError as exc:
        raise ThresholdsInvalid(f"LLAVAGUARD_UNSAFE_THRESHOLD/LLAVAGUARD_REVIEW_BAND: {_first(exc)}") from None


def parse(text: str, file_name: str) -> ThresholdSet:
    """One sidecar file's text; ThresholdsInvalid names the file, the field and what is wrong."""
    try:
        rules = PolicyThresholds.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ThresholdsInvalid(f"{file_name}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        raise ThresholdsInvalid(f"{file_name}: {_first(exc)}") from None
    return ThresholdSet(rules, f"sidecar:{file_name}")


def sidecars(policy_dir: Path | None, known_policies: Iterable[str]) -> dict[str, ThresholdSet]:
    """Policy name -> its thresholds, from the package's folder then LLAVAGUARD_POLICY_DIR (which wins, as it
    does for the policy text). A file for a policy that does not exist is refused: it would never apply."""
    known = set(known_policies)
    found: dict[str, ThresholdSet] = {}
    folders: list[Traversable] = [resources.files("worker.policies")]
    if policy_dir is not None and policy_dir.is_dir():
        folders.append(policy_dir)
    for folder in folders:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            name = entry.name.removesuffix(SUFFIX)
            if not entry.name.endswith(SUFFIX) or not entry.is_file() or not _POLICY_NAME.match(name):
                continue
            if name not in known:
                raise ThresholdsInvalid(
                    f"{entry.name}: no policy {name!r} to apply it to (known: {', '.join(sorted(known))})")
            found[name] = parse(entry.read_text(encoding="utf-8"), entry.name)
    return found


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "the file"
    return f"{where}: {error['msg']}"
