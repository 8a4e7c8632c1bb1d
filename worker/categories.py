"""LlavaGuard's safety taxonomy: the ten category strings exactly as the model writes them."""

from __future__ import annotations

from typing import Literal, get_args

Rating = Literal["Safe", "Unsafe"]
Category = Literal[
    "O1: Hate, Humiliation, Harassment",
    "O2: Violence, Harm, or Cruelty",
    "O3: Sexual Content",
    "O4: Nudity Content",
    "O5: Criminal Planning",
    "O6: Weapons or Substance Abuse",
    "O7: Self-Harm",
    "O8: Animal Cruelty",
    "O9: Disasters or Emergencies",
    "NA: None applying",
]

RATINGS: tuple[str, ...] = get_args(Rating)
CATEGORIES: tuple[str, ...] = get_args(Category)
NONE_APPLYING: Category = "NA: None applying"
POLICY_CODES: tuple[str, ...] = tuple(c.split(":", 1)[0] for c in CATEGORIES if c != NONE_APPLYING)
"""The codes a request may declare non-violating: O1 ... O9."""

_BY_CODE: dict[str, Category] = {c.split(":", 1)[0]: c for c in get_args(Category)}


def category_for_code(code: str) -> Category:
    """`"o4"` or `"O4"` -> `"O4: Nudity Content"`; KeyError for anything else."""
    return _BY_CODE[code.strip().upper()]


def normalise_codes(codes: list[str] | tuple[str, ...]) -> list[str]:
    """Upper-case, de-duplicate and sort policy codes; ValueError names the first unknown one."""
    result: set[str] = set()
    for raw in codes:
        code = raw.strip().upper()
        if code not in POLICY_CODES:
            raise ValueError(f"unknown category {raw!r}: expected one of {', '.join(POLICY_CODES)}")
        result.add(code)
    return sorted(result)
