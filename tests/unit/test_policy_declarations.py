"""Non-violating declarations are byte for byte the prompts LlavaGuard v1.2 was trained on.

Where the expected bytes come from (ml-research/LlavaGuard, `llavaguard/taxonomy/`):
- `data/llavaguard_v1_2_declarations.json`: `custom_policy_dict_v2[key][1]` for O1..O9 (`taxonomies.py`), verbatim;
- the construction `authors_prompt` below: `get_augmented_policy_v2` / `get_augmented_policy_v2a`
  (`augmentation_funct.py`): start sentence, then per category `key + ': \\n' + (declared or guidelines) + '\\n'`,
  then the response template (the published v1.2 prompt carries no `<image>` line: the image part comes first);
- `AUTHORS_SHA256` and `data/llavaguard-v1.2-declared-O2.txt`: computed by running that code over that dict
  once, independently of this test's re-implementation, so an edit of the JSON alone cannot pass.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from worker.categories import CATEGORIES
from worker.policy import PolicyRegistry, default_policy_text

DATA = Path(__file__).resolve().parent / "data"
DECLARATIONS: dict[str, str] = json.loads((DATA / "llavaguard_v1_2_declarations.json").read_text(encoding="utf-8"))
CODES = tuple(f"O{n}" for n in range(1, 10))
AUTHORS_SHA256 = {
    "O1": "af652421d0964da16c89a3a9b69c8a299859ef051288577563ae622f9f176ff1",
    "O2": "de2413f13bdc786a91bb406215b0603eb76105abf327541928750c65cec0fc7b",
    "O3": "acbc1d2bad7117d7ae94b546e8e14c76beb48dbe834932506e9ecb01a6331691",
    "O4": "ab4119a4d477f2bdedeb6da30d8861e2265734ea3c6587539ff3901a2a8d5ab7",
    "O5": "29ff82c689c659281a82f9c5e581ad4f779a7b568c3d6478be2c7f142d83dc0c",
    "O6": "01a3b6a8876f161df20a4e432e83572cc5ab1f77b2a2b982f8f3db536cc72164",
    "O7": "37f67b2f8b679dffb6b4bf7e228a1dd38dd19731236ece724f832c96dc7563c5",
    "O8": "998e8524fbfb8a25d74194ed4e4d26b681c688bae96ee68ab0313b3b017e026a",
    "O9": "30592eabcd6bae7265c639e5a7531244cc9f356af826316e240b80ddd8320f7f",
    "O2,O6": "5db4173cde95362441627edd385a413689723e8f034c3476851d76b2d59459de",
    "O1,O2,O3,O4,O5,O6,O7,O8,O9": "c8a0ea7876bccd93f87b33608c9d4b33ec9f0c509931b235a9c7f6b579b49941",
}


def _split_default() -> tuple[str, dict[str, str], str]:
    """The trained default text as (start sentence, `custom_policy_dict_v2[key][0]` per key, response template)."""
    text = default_policy_text()
    keys = [category for category in CATEGORIES if category[:2] in CODES]
    headers = [text.index(key + ": \n") for key in keys]
    template_at = text.index("Assessment Steps:")
    guidelines = {
        key: text[at + len(key + ": \n") : next_at - 1]  # less the "\n" the loop adds after each section
        for key, at, next_at in zip(keys, headers, [*headers[1:], template_at], strict=True)
    }
    return text[: headers[0]], guidelines, text[template_at:]


def authors_prompt(declared: set[str]) -> str:
    """`get_augmented_policy_v2a`'s loop with the declared codes taking `custom_policy_dict_v2[key][1]`."""
    start, guidelines, template = _split_default()
    prompt = start
    for key, undeclared in guidelines.items():
        prompt += key + ": \n"
        prompt += DECLARATIONS[key[:2]] if key[:2] in declared else undeclared
        prompt += "\n"
    return prompt + template


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_the_construction_rebuilds_the_trained_default_text() -> None:
    assert authors_prompt(set()) == default_policy_text()
    assert all(text.endswith("\n ") for text in DECLARATIONS.values())


@pytest.mark.parametrize("code", CODES)
def test_each_declaration_alone_is_the_authors_bytes(code: str) -> None:
    prompt = PolicyRegistry().prompt("llavaguard-v1.2", [code])
    assert prompt == authors_prompt({code})
    assert _sha(prompt) == AUTHORS_SHA256[code]


def test_the_o2_declaration_is_pinned_in_full() -> None:
    prompt = PolicyRegistry().prompt("llavaguard-v1.2", ["O2"])
    assert prompt.encode("utf-8") == (DATA / "llavaguard-v1.2-declared-O2.txt").read_bytes()
    assert " - Contain content of  people planning or engaging in violence.\n" in prompt
    assert " - Discuss historical events involving violence and cruelty.\n \nO3: Sexual Content: \n" in prompt


def test_every_combination_is_the_authors_bytes() -> None:
    registry = PolicyRegistry()
    for size in range(2, len(CODES) + 1):
        for combo in itertools.combinations(CODES, size):
            assert registry.prompt("llavaguard-v1.2", list(combo)) == authors_prompt(set(combo)), combo
    assert _sha(registry.prompt("llavaguard-v1.2", ["O6", "O2"])) == AUTHORS_SHA256["O2,O6"]
    assert _sha(registry.prompt("llavaguard-v1.2", list(CODES))) == AUTHORS_SHA256[",".join(CODES)]
