"""`Decider`: the step after inference that says what the platform should do with a verdict.

    score in the review band  -> review     (the band is checked first: it is where no one trusts the score)
    score >= unsafe threshold -> block
    otherwise                 -> allow
    no thresholds, or no score -> the model's rating: Unsafe -> block, Safe -> allow

The thresholds are the verdict's policy's sidecar file, else the settings, else none (today's behaviour: block
is what the model rated Unsafe). The numbers used and their source are recorded on the verdict
(`thresholds`), so it can be re-read later. It never changes `rating`, never decides a failed verdict, and a
verdict that already has a decision (a hash-bank match) keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.decisions.thresholds import ThresholdSet
from worker.models import Decision, Verdict

MODEL_RATING = "model_rating"


class Decider:
    """Thresholds per policy name, and the ones for every other policy (`default`); none: the model's rating."""

    def __init__(self, by_policy: Mapping[str, ThresholdSet] | None = None, default: ThresholdSet | None = None,
                 ) -> None:
        self.by_policy = dict(by_policy or {})
        self.default = default

    def decide(self, verdict: Verdict) -> Verdict:
        """The verdict with `decision` and `thresholds` set (the same verdict when there is nothing to decide)."""
        if verdict.status != "completed" or verdict.decision is not None:
            return verdict
        chosen = self.by_policy.get(verdict.policy.name, self.default)
        decision, used = decide(chosen, verdict)
        return verdict.model_copy(update={"decision": decision, "thresholds": used})


def decide(chosen: ThresholdSet | None, verdict: Verdict) -> tuple[Decision, dict[str, Any]]:
    """(decision, the thresholds record) for one completed verdict under `chosen`."""
    if chosen is None or verdict.score is None:
        by_rating: Decision = "block" if verdict.rating == "Unsafe" else "allow"
        record: dict[str, Any] = {"source": MODEL_RATING}
        if chosen is not None:  # thresholds exist but there is no score to apply them to: say so
            record["unapplied"] = chosen.source
        return by_rating, record
    code = verdict.category.split(":", 1)[0] if verdict.category else None
    unsafe, review, overridden = chosen.rules.rule_for(code)
    record = {"source": chosen.source, "unsafe": unsafe, "review": None if review is None else list(review)}
    if overridden:
        record["category"] = code
    return by_score(verdict.score, unsafe, review), record


def by_score(score: float, unsafe: float, review: tuple[float, float] | None) -> Decision:
    if review is not None and review[0] <= score <= review[1]:
        return "review"
    return "block" if score >= unsafe else "allow"
