"""The story of one moderation, top to bottom: policy -> intake -> inference -> verdict -> store.

Celery tasks are thin wrappers around `Moderator`; nothing here knows about Celery. Permanent problems
(`ModerationFailed`) become a `failed` verdict; transient ones (`TransientError`) propagate so that the
caller retries; a verdict is stored at most once per moderation id (the first one wins).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from worker.errors import ErrorCode, ModerationFailed
from worker.inference.llavaguard import LlavaGuardJudge
from worker.intake import Intake
from worker.matching.base import Matcher, first_match, matched_verdict
from worker.models import ErrorInfo, ImageInfo, ModerationRequest, PolicyRef, Verdict, utcnow
from worker.observability import metrics
from worker.policy import PolicyRegistry, prompt_sha256
from worker.stores import VerdictStore

log = structlog.get_logger(__name__)

VerdictHook = Callable[[ModerationRequest, Verdict, bool], None]
"""Called after a verdict is in the store: (request, verdict, first). `first` is False when the verdict
was already stored (a redelivered task): hooks must then be idempotent, since the earlier run may have
crashed between storing and notifying. A hook that raises TransientError makes the task retry."""


@dataclass
class Moderator:
    policies: PolicyRegistry
    intake: Intake
    judge: LlavaGuardJudge
    store: VerdictStore
    hooks: list[VerdictHook] = field(default_factory=list)
    matchers: list[Matcher] = field(default_factory=list)
    """Asked in order after intake, before inference (banks, then the verdict cache); first hit wins."""

    def moderate(self, request: ModerationRequest) -> Verdict:
        """Judge and persist one request; a redelivered request returns the verdict already stored."""
        existing = self.store.get(request.id)
        if existing is not None:
            log.info("moderation.duplicate", status=existing.status)
            return self._after(request, existing, first=False)
        return self._persist(request, self.judge_request(request))

    def judge_request(self, request: ModerationRequest) -> Verdict:
        policy = PolicyRef(name=request.policy)
        image = ImageInfo(source=request.image.source)
        try:
            prompt = self.policies.prompt(request.policy, request.non_violating)
            prompt_hash = prompt_sha256(prompt)
            policy = PolicyRef(name=request.policy, sha256=prompt_hash)
            with metrics.stage("fetch"):
                prepared = self.intake.load(request.image)
            image = prepared.info
            if self.matchers:
                model = self.judge.backend.model_name()  # cached per process: the cache key needs it
                outcome = first_match(self.matchers, request, prepared, prompt_hash, model)
                if outcome is not None:
                    return matched_verdict(request, outcome, policy=policy, image=image, model=model)
            with metrics.stage("inference"), metrics.in_flight():
                judgement = self.judge.judge(prepared.payload, prepared.mime, prompt)
        except ModerationFailed as exc:
            return failed_verdict(request, exc.code, exc.message, policy=policy, image=image)
        found = judgement.assessment
        return Verdict(
            id=request.id, status="completed", rating=found.rating, category=found.category,
            rationale=found.rationale, policy=policy, model=judgement.model, image=image,
            metadata=request.metadata, created_at=request.created_at, completed_at=utcnow(), owner=request.owner,
            backend=judgement.backend, constraint=judgement.constraint,
            score=judgement.score, score_source=judgement.score_source, audit=request.audit,
        )

    def record_failure(self, request: ModerationRequest, code: ErrorCode, message: str) -> Verdict:
        """Store a failed verdict for a request whose transient errors outlived every retry."""
        policy = PolicyRef(name=request.policy)
        image = ImageInfo(source=request.image.source)
        return self._persist(request, failed_verdict(request, code, message, policy=policy, image=image))

    def _persist(self, request: ModerationRequest, verdict: Verdict) -> Verdict:
        with metrics.stage("store"):
            saved = self.store.save(verdict)
        if saved:
            log.info("moderation.stored", status=verdict.status, rating=verdict.rating,
                     category=verdict.category, error=verdict.error.code if verdict.error else None)
            return self._after(request, verdict, first=True)
        stored = self.store.get(verdict.id)
        log.info("moderation.already_stored")
        return self._after(request, stored if stored is not None else verdict, first=False)

    def _after(self, request: ModerationRequest, verdict: Verdict, *, first: bool) -> Verdict:
        for hook in self.hooks:
            hook(request, verdict, first)
        return verdict


def failed_verdict(
    request: ModerationRequest, code: ErrorCode | str, message: str, *, policy: PolicyRef, image: ImageInfo
) -> Verdict:
    return Verdict(
        id=request.id, status="failed", policy=policy, image=image,
        error=ErrorInfo(code=str(code), message=message), metadata=request.metadata,
        created_at=request.created_at, completed_at=utcnow(), owner=request.owner, audit=request.audit,
    )
