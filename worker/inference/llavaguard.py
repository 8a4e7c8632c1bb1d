"""`LlavaGuardJudge`: the meaning layer; one image + one policy prompt in, one verdict out.

It knows LlavaGuard's sampling settings, its output schema and how to read its answer, and nothing about HTTP:
any `InferenceBackend` serves. An answer that cannot be read is re-asked (sampling at temperature > 0 gives a
different answer) up to `max_parse_attempts` times, then becomes a permanent MODEL_OUTPUT_INVALID failure.
Transient backend errors pass through untouched: retrying those is the task's job, with backoff.
With constrained decoding on, the answer is constrained to the training layout's regex, else the JSON schema,
else not at all, as the backend allows (`constraint_choice.py`); the constraint used is on the judgement.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from worker.categories import CATEGORIES
from worker.errors import ErrorCode, ModerationFailed
from worker.inference.base import Completion, Constraint, InferenceBackend, VisionRequest
from worker.inference.category_scoring import category_scores
from worker.inference.constraint_choice import LADDER, ConstraintLadder, ConstraintSetting
from worker.inference.output_parser import Assessment, OutputUnparseable, parse_assessment
from worker.inference.scoring import rating_score
from worker.inference.training_format import OUTPUT_REGEX

ASSESSMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rating": {"type": "string", "enum": ["Unsafe", "Safe"]},
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "rationale": {"type": "string"},
    },
    "required": ["rating", "category", "rationale"],
    "additionalProperties": False,
}
"""The training output format as a schema; property order is generation order (rating is decided first)."""

SHOWN_OUTPUT_CHARS = 200


@dataclass(frozen=True)
class Judgement:
    assessment: Assessment
    model: str
    raw_text: str
    attempts: int
    """How many generations it took (1 unless earlier answers were unreadable)."""
    backend: str = "sglang"
    constraint: Constraint = "none"
    score: float | None = None
    """P(Unsafe) from the rating token's log-probabilities; None when the backend returned none."""
    score_source: str | None = None
    category_scores: dict[str, float] | None = None
    """Category -> probability from the category token's alternatives; None without log-probabilities."""


class LlavaGuardJudge:
    """Asks a backend for LlavaGuard's assessment; sampling defaults are the authors' own."""

    def __init__(
        self,
        backend: InferenceBackend,
        *,
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 50,
        max_tokens: int = 500,
        constrained: bool = True,
        max_parse_attempts: int = 3,
        constraint: ConstraintSetting = "auto",
        top_logprobs: int = 0,
    ) -> None:
        if max_parse_attempts < 1:
            raise ValueError("max_parse_attempts must be at least 1")
        self.backend = backend
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.max_tokens = max_tokens
        self.constrained = constrained
        self.max_parse_attempts = max_parse_attempts
        self.constraints = ConstraintLadder(backend.constraints(), constraint if constrained else "none")
        self.top_logprobs = top_logprobs
        """Alternatives per token to ask for (the score needs a few at the rating token; 0: no score)."""

    def request(self, image: bytes, mime: str, prompt: str) -> VisionRequest:
        """The backend request for one image; constrained decoding makes the answer always parse."""
        return _constrained(VisionRequest(
            image=image,
            mime=mime,
            prompt=prompt,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_tokens=self.max_tokens,
            top_logprobs=self.top_logprobs,
        ), self.constraints.current())

    def judge(self, image: bytes, mime: str, prompt: str) -> Judgement:
        """Generate until the answer parses; InferenceUnavailable and ModerationFailed propagate."""
        request = self.request(image, mime, prompt)
        reason, text = "no attempt made", ""
        for attempt in range(1, self.max_parse_attempts + 1):
            request, completion = self._complete(request)
            text = completion.text
            try:
                assessment = parse_assessment(text)
            except OutputUnparseable as exc:
                reason = str(exc)
                continue
            scored = rating_score(completion.logprobs, requested=request.top_logprobs > 0)
            return Judgement(
                assessment, self.backend.model_name(), text, attempt,
                backend=self.backend.backend_name(), constraint=request.constraint,
                score=scored.score, score_source=scored.source,
                category_scores=category_scores(completion.logprobs) if request.top_logprobs > 0 else None,
            )
        raise ModerationFailed(
            ErrorCode.MODEL_OUTPUT_INVALID,
            f"model output unreadable after {self.max_parse_attempts} attempts: {reason}; "
            f"last output: {text[:SHOWN_OUTPUT_CHARS]!r}",
        )

    def _complete(self, request: VisionRequest) -> tuple[VisionRequest, Completion]:
        """Generate; a server refusing the request's constraint gets the same request one step down the ladder."""
        for _ in LADDER:  # each refusal drops one constraint for good, and `none` is never refused
            try:
                return request, self.backend.complete(request)
            except ModerationFailed as exc:
                if not self.constraints.refuse(request.constraint, exc):
                    raise
                request = _constrained(request, self.constraints.current())
        raise AssertionError("unreachable: the constraint ladder ends in `none`")


def _constrained(request: VisionRequest, constraint: Constraint) -> VisionRequest:
    return replace(
        request,
        regex=OUTPUT_REGEX if constraint == "regex" else None,
        json_schema=ASSESSMENT_SCHEMA if constraint == "json_schema" else None,
    )
