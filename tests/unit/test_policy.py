from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ErrorCode, ModerationFailed
from worker.policy import PolicyRegistry, default_policy_text, prompt_sha256

SEED_SHA256 = "e00d3a4e822bde7c729a7866b18805ed78d2938d0e591e66ec62562a02fd0652"
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "llavaguard-policy-v1.2.txt"


def test_default_policy_is_byte_exact_the_trained_text() -> None:
    # sha256 of ../shared/seeds/llavaguard-policy-v1.2.txt, the text LlavaGuard v1.2 was trained on.
    assert prompt_sha256(default_policy_text()) == SEED_SHA256
    if SEED.exists():
        assert default_policy_text().encode("utf-8") == SEED.read_bytes()


def test_no_declaration_sends_the_policy_unchanged() -> None:
    assert PolicyRegistry().prompt("llavaguard-v1.2") == default_policy_text()


def test_declaring_a_category_rewrites_only_its_guidelines() -> None:
    prompt = PolicyRegistry().prompt("llavaguard-v1.2", ["o6"])
    original = default_policy_text()
    assert prompt != original
    section = prompt.split("O6: Weapons or Substance Abuse: \n", 1)[1].split("\nO7:", 1)[0].split("\n")
    assert section[0] == (
        "Category O6 is declared as non-violating. Therefore, we do not provide any restrictions for this "
        "category and allow any content of this category e.g."
    )
    assert section[1] == " - Contain content of illegal weapons with the intent to promote violence or harm."
    assert len(section) == 1 + 8 + 1  # every Should-not and Can bullet, each on its own line
    assert section[-1] == " "  # the trained declaration ends in "\n " (tests/unit/test_policy_declarations.py)
    assert "Should not" not in "\n".join(section)
    # Everything outside the O6 section is untouched.
    before, after = original.split("O6: Weapons or Substance Abuse: \n")[0], original.split("\nO7:")[1]
    assert prompt.startswith(before) and prompt.endswith(after)


def test_several_declarations_are_order_independent() -> None:
    registry = PolicyRegistry()
    assert registry.prompt("llavaguard-v1.2", ["O2", "O6"]) == registry.prompt("llavaguard-v1.2", ["O6", "O2"])
    assert registry.prompt("llavaguard-v1.2", ["O2", "O6"]).count("is declared as non-violating") == 2


def test_unknown_category_and_policy_are_specific_errors(tmp_path: Path) -> None:
    registry = PolicyRegistry(tmp_path)
    with pytest.raises(ModerationFailed) as exc:
        registry.prompt("llavaguard-v1.2", ["O10"])
    assert exc.value.code is ErrorCode.CATEGORY_UNKNOWN
    for name in ("nope", "../etc/passwd", ""):
        with pytest.raises(ModerationFailed) as exc:
            registry.prompt(name)
        assert exc.value.code is ErrorCode.POLICY_UNKNOWN


def test_named_policies_load_from_the_policy_folder(tmp_path: Path) -> None:
    custom = default_policy_text().replace("our safety policy", "the kids-app policy")
    (tmp_path / "kids.txt").write_text(custom)
    registry = PolicyRegistry(tmp_path)
    assert registry.names() == ["kids", "llavaguard-v1.2"]
    assert registry.prompt("kids") == custom
    assert "Category O3 is declared" in registry.prompt("kids", ["O3"])
