"""The decider's table, the thresholds files' validation, and the composition root's start-up errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from worker import composition
from worker.decisions import Decider, ThresholdsInvalid
from worker.decisions.thresholds import ThresholdSet, from_settings, parse, sidecars
from worker.errors import SettingsError
from worker.models import ErrorInfo, ImageInfo, PolicyRef, Verdict
from worker.notify.events import UNSAFE, event_body, events_for
from worker.settings import load_settings

NOW = datetime(2026, 12, 2, tzinfo=UTC)
SIDECAR = {"unsafe": 0.5, "review": [0.3, 0.7], "categories": {"O4": {"unsafe": 0.4, "review": [0.2, 0.35]},
                                                                 "o7": {"review": None}}}


def verdict(score: float | None, rating: str = "Unsafe", category: str = "O1: Hate, Humiliation, Harassment",
            policy: str = "strict", **fields: Any) -> Verdict:
    return Verdict(id="v", status="completed", rating=rating, category=category, policy=PolicyRef(name=policy),
                   image=ImageInfo(), created_at=NOW, completed_at=NOW, score=score, **fields)


def strict() -> Decider:
    return Decider({"strict": parse(json.dumps(SIDECAR), "strict.thresholds.json")})


def test_without_thresholds_the_models_rating_decides_as_before() -> None:
    for score in (None, 0.2, 0.9):
        unsafe, safe = Decider().decide(verdict(score)), Decider().decide(verdict(score, rating="Safe"))
        assert (unsafe.decision, safe.decision) == ("block", "allow")
        assert unsafe.thresholds == safe.thresholds == {"source": "model_rating"}
        assert (unsafe.rating, safe.rating) == ("Unsafe", "Safe")


@pytest.mark.parametrize(("score", "decision"), [
    (0.29, "allow"), (0.3, "review"), (0.5, "review"), (0.7, "review"), (0.71, "block"), (1.0, "block"), (0.0, "allow"),
])
def test_the_review_band_is_checked_before_the_unsafe_threshold(score: float, decision: str) -> None:
    decided = strict().decide(verdict(score, rating="Safe"))
    assert decided.decision == decision
    assert decided.rating == "Safe"  # the model's answer stays as it was
    assert decided.thresholds == {"source": "sidecar:strict.thresholds.json", "unsafe": 0.5, "review": [0.3, 0.7]}


@pytest.mark.parametrize(("score", "decision"), [(0.19, "allow"), (0.2, "review"), (0.35, "review"),
                                                 (0.39, "allow"), (0.4, "block")])
def test_a_category_override_applies_by_the_chosen_category(score: float, decision: str) -> None:
    decided = strict().decide(verdict(score, category="O4: Nudity Content"))
    assert decided.decision == decision
    assert decided.thresholds == {"source": "sidecar:strict.thresholds.json", "unsafe": 0.4, "review": [0.2, 0.35],
                                  "category": "O4"}


def test_an_override_may_switch_the_band_off_and_keep_the_policys_threshold() -> None:
    decided = strict().decide(verdict(0.6, category="O7: Self-Harm"))
    assert decided.decision == "block"  # 0.6 is inside the policy's band, but O7 has none
    assert decided.thresholds == {"source": "sidecar:strict.thresholds.json", "unsafe": 0.5, "review": None,
                                  "category": "O7"}


def test_no_score_falls_back_to_the_rating_and_says_which_thresholds_were_not_applied() -> None:
    decided = strict().decide(verdict(None, rating="Safe", score_source="backend_returned_none"))
    assert decided.decision == "allow"
    assert decided.thresholds == {"source": "model_rating", "unapplied": "sidecar:strict.thresholds.json"}


def test_settings_apply_to_policies_without_a_sidecar() -> None:
    default = from_settings(0.8, (0.4, 0.6))
    decider = Decider({"strict": parse('{"unsafe": 0.1}', "strict.thresholds.json")}, default)
    assert decider.decide(verdict(0.5, policy="llavaguard-v1.2")).decision == "review"
    assert decider.decide(verdict(0.7, policy="llavaguard-v1.2")).thresholds == {
        "source": "settings", "unsafe": 0.8, "review": [0.4, 0.6]}
    assert decider.decide(verdict(0.7, policy="llavaguard-v1.2")).decision == "allow"
    assert decider.decide(verdict(0.5, policy="strict")).decision == "block"
    assert from_settings(None, None) is None


def test_failed_verdicts_get_no_decision_and_an_earlier_decision_is_kept() -> None:
    failed = Verdict(id="f", status="failed", policy=PolicyRef(name="strict"), image=ImageInfo(),
                     error=ErrorInfo(code="fetch_failed", message="x"), created_at=NOW, completed_at=NOW)
    assert strict().decide(failed) == failed
    banked = verdict(0.1, decision="block", thresholds={"source": "bank"})
    assert strict().decide(banked) == banked


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "strict.thresholds.json: not JSON"),
    ("{}", "strict.thresholds.json: unsafe: Field required"),
    ('{"unsafe": 1.5}', "unsafe: Input should be less than or equal to 1"),
    ('{"unsafe": 0.5, "review": [0.7, 0.3]}', "review: Value error, the review band's low end 0.7 is above"),
    ('{"unsafe": 0.5, "review": [0.3]}', "review.1: Field required"),
    ('{"unsafe": 0.5, "block": 0.9}', "block: Extra inputs are not permitted"),
    ('{"unsafe": 0.5, "categories": {"O12": {}}}', "categories: Value error, unknown category 'O12'"),
    ('{"unsafe": 0.5, "categories": {"O4": {"unsafe": -1}}}', "categories.O4.unsafe: Input should be greater"),
    ('{"unsafe": "high"}', "unsafe: Input should be a valid number"),
])
def test_a_bad_file_names_itself_and_the_field(text: str, problem: str) -> None:
    with pytest.raises(ThresholdsInvalid) as caught:
        parse(text, "strict.thresholds.json")
    assert problem in str(caught.value)


def test_sidecars_beside_the_policies_and_one_for_an_unknown_policy(tmp_path: Path) -> None:
    (tmp_path / "strict.txt").write_text("policy", encoding="utf-8")
    (tmp_path / "strict.thresholds.json").write_text('{"unsafe": 0.4}', encoding="utf-8")
    (tmp_path / "notes.json").write_text("not a sidecar", encoding="utf-8")
    found = sidecars(tmp_path, ["llavaguard-v1.2", "strict"])
    assert list(found) == ["strict"] and isinstance(found["strict"], ThresholdSet)
    assert (found["strict"].rules.unsafe, found["strict"].source) == (0.4, "sidecar:strict.thresholds.json")
    (tmp_path / "typo.thresholds.json").write_text('{"unsafe": 0.4}', encoding="utf-8")
    with pytest.raises(ThresholdsInvalid, match=r"typo.thresholds.json: no policy 'typo'"):
        sidecars(tmp_path, ["llavaguard-v1.2", "strict"])


def test_the_composition_root_refuses_a_bad_file_at_start(tmp_path: Path) -> None:
    (tmp_path / "strict.txt").write_text("policy", encoding="utf-8")
    (tmp_path / "strict.thresholds.json").write_text('{"unsafe": 0.5, "review": [0.9, 0.1]}', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"LLAVAGUARD_POLICY_DIR.*strict.thresholds.json: review"):
        composition.decider(load_settings(policy_dir=tmp_path))
    (tmp_path / "strict.thresholds.json").write_text('{"unsafe": 0.5}', encoding="utf-8")
    built = composition.decider(load_settings(policy_dir=tmp_path, unsafe_threshold=0.9, review_band="0.2,0.3"))
    assert built.by_policy["strict"].rules.unsafe == 0.5
    assert built.default is not None and built.default.rules.review == (0.2, 0.3)
    assert composition.decider(load_settings()).default is None


@pytest.mark.parametrize(("env", "problem"), [
    ({"review_band": "0.3,0.7"}, "LLAVAGUARD_REVIEW_BAND: needs LLAVAGUARD_UNSAFE_THRESHOLD"),
    ({"unsafe_threshold": 0.5, "review_band": "0.3"}, "LLAVAGUARD_REVIEW_BAND: Value error, expected two numbers"),
    ({"unsafe_threshold": 0.5, "review_band": "0.8,0.2"}, "LLAVAGUARD_REVIEW_BAND: Value error, expected low,high"),
    ({"unsafe_threshold": 1.2}, "LLAVAGUARD_UNSAFE_THRESHOLD: Input should be less than or equal to 1"),
])
def test_threshold_settings_are_checked_at_load(env: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_settings(**env)


def test_the_readme_file_example_is_valid() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    example = next(line for line in readme.splitlines() if line.startswith('{"unsafe": 0.5, "review"'))
    rules = parse(example, "x.thresholds.json").rules
    assert rules.rule_for("O9") == (0.5, None, True) and rules.rule_for("O4") == (0.4, (0.2, 0.6), True)


def test_moderation_unsafe_follows_the_models_rating_not_the_decision() -> None:
    unsafe_allowed = strict().decide(verdict(0.1, rating="Unsafe"))
    safe_blocked = strict().decide(verdict(0.9, rating="Safe"))
    assert (unsafe_allowed.decision, safe_blocked.decision) == ("allow", "block")
    assert events_for(unsafe_allowed, set()) == [UNSAFE]
    assert events_for(safe_blocked, set()) == []
    assert json.loads(event_body(UNSAFE, unsafe_allowed))["data"]["decision"] == "allow"
