"""The seam between the pipeline and every matcher (issue 12): what a matcher is asked and what it answers.

`Moderator.matchers` are asked in order after intake and before inference (banks first, then the verdict
cache); the first `MatchOutcome` wins and the verdict is built from it with `match` set and no model call.
That verdict then goes through the decision step, the store and the hooks (webhooks, cache insert) like
any other. A matcher must never raise for its own infrastructure's sake (a Redis outage): it logs, counts
and returns None, so that the image is judged normally (fail open). `ModerationFailed`/`TransientError`
are the only exceptions the pipeline expects from it.

Keep this module stable: `m-banks` implements a bank matcher against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.categories import Category, Rating
from worker.intake import PreparedImage
from worker.models import Decision, ImageInfo, MatchInfo, ModerationRequest, PolicyRef, Verdict, utcnow


@dataclass(frozen=True)
class MatchOutcome:
    """A match, and the answer it gives: an earlier verdict's (cache) or an operator's (bank)."""

    match: MatchInfo
    """Recorded on the new verdict as `verdict.match`."""
    rating: Rating
    category: Category
    rationale: str | None = None
    score: float | None = None
    score_source: str | None = None
    decision: Decision | None = None
    """Set by a bank (its action decides); None lets the decision step decide as for a model answer."""
    category_scores: dict[str, float] | None = None


class Matcher(Protocol):
    """Answers an image without the model, or returns None to let the next matcher (then the model) try."""

    def match(
        self, request: ModerationRequest, image: PreparedImage, prompt_sha256: str, model: str
    ) -> MatchOutcome | None:
        """`image.info` carries `sha256`, `pdq` and `pdq_quality` (None when PDQ could not be computed);
        `image.md5` the MD5 of the original bytes; `prompt_sha256` and `model` are what a cached answer
        must have been given under to be reused."""
        ...


def first_match(
    matchers: Sequence[Matcher], request: ModerationRequest, image: PreparedImage, prompt_sha256: str, model: str
) -> MatchOutcome | None:
    """The first matcher's answer, in order; None when none matched."""
    for matcher in matchers:
        outcome = matcher.match(request, image, prompt_sha256, model)
        if outcome is not None:
            return outcome
    return None


def matched_verdict(
    request: ModerationRequest, outcome: MatchOutcome, *, policy: PolicyRef, image: ImageInfo, model: str
) -> Verdict:
    """The verdict of a matched image: the match's answer, this request's own id, image, metadata, times."""
    return Verdict(
        id=request.id, status="completed", rating=outcome.rating, category=outcome.category,
        rationale=outcome.rationale, policy=policy, model=model, image=image,
        metadata=request.metadata, created_at=request.created_at, completed_at=utcnow(), owner=request.owner,
        score=outcome.score, score_source=outcome.score_source, audit=request.audit,
        decision=outcome.decision, category_scores=outcome.category_scores, match=outcome.match,
    )
