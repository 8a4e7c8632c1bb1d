"""The inference backend contract: `BackendContract` runs unchanged against every `InferenceBackend`.

Not collected itself (no `Test` prefix): a test module subclasses it as `class TestXyzBackend(BackendContract)`
and provides two fixtures and one class attribute:

    backend_name     ClassVar[str]: what `backend_name()` must answer (`sglang`, `vllm`, `openai`, `transformers`)
    backend          fixture -> a working backend (built once per test; the subclass closes it)
    faulty           fixture -> a factory `kind -> backend` whose "server side" fails in that way:
        "unavailable"    the server cannot be reached / the model cannot run (connection refused, process down;
                         in process: the model failed to load, the device is lost)   -> InferenceUnavailable
        "overloaded"     the server is busy right now (503/429 with Retry-After; in process: the batch queue is
                         full)                                                       -> InferenceUnavailable
        "refuses_input"  the server reads the request and refuses the image (a 400 about the image; in process:
                         the processor cannot read it). The test sends `UNREADABLE_IMAGE` to this backend, so a
                         subclass may return its ordinary backend here              -> ModerationFailed
                                                                                        (inference_rejected)

Optional class attributes: `overload_retry_after_s` (the Retry-After the overloaded server sends, checked
when not None), `returns_logprobs` (False: the backend returns none, so the score must be None with a reason),
`max_tokens` (enough for a whole answer under a constraint).

The contract is about meaning, not wire: the same image and prompt give a parsed assessment; a constraint the
backend claims is honoured; failures mean the same thing to the caller whichever backend raised them;
log-probabilities become a score in [0, 1] or None with a reason; names are reported.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import ClassVar, Literal

import pytest

from worker.categories import CATEGORIES, RATINGS
from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.base import Constraint, InferenceBackend, VisionRequest
from worker.inference.llavaguard import ASSESSMENT_SCHEMA, LlavaGuardJudge
from worker.inference.training_format import OUTPUT_REGEX
from worker.models import DEFAULT_POLICY
from worker.policy import PolicyRegistry
from worker.standin.palette import make_image

FaultKind = Literal["unavailable", "overloaded", "refuses_input"]
FaultyBackend = Callable[[FaultKind], InferenceBackend]
KNOWN_CONSTRAINTS: frozenset[Constraint] = frozenset({"regex", "json_schema", "none"})
UNREADABLE_IMAGE = b"\x89PNG\r\n\x1a\n this is not the rest of a PNG file"
"""Starts like a PNG (so a server that sniffs the type tries to decode it), then is not one."""
TOP_LOGPROBS = 5


def unsafe_image() -> bytes:
    """Red: the stand-in's O1 (Unsafe); any image serves a real model."""
    return make_image("O1")


def policy_prompt() -> str:
    return PolicyRegistry().prompt(DEFAULT_POLICY)


class BackendContract:
    """What every inference backend must do; see the module docstring for what a subclass provides."""

    backend_name: ClassVar[str]
    overload_retry_after_s: ClassVar[float | None] = None
    returns_logprobs: ClassVar[bool] = True
    max_tokens: ClassVar[int] = 500

    @pytest.fixture
    def backend(self) -> InferenceBackend:
        raise NotImplementedError("a BackendContract subclass provides the `backend` fixture")

    @pytest.fixture
    def faulty(self) -> FaultyBackend:
        raise NotImplementedError("a BackendContract subclass provides the `faulty` fixture")

    def request(self, *, constraint: Constraint = "none", top_logprobs: int = 0,
                image: bytes | None = None) -> VisionRequest:
        return VisionRequest(
            image=unsafe_image() if image is None else image, mime="image/png", prompt=policy_prompt(),
            temperature=0.2, top_p=0.95, top_k=50, max_tokens=self.max_tokens,
            json_schema=ASSESSMENT_SCHEMA if constraint == "json_schema" else None,
            regex=OUTPUT_REGEX if constraint == "regex" else None, top_logprobs=top_logprobs,
        )

    # -- names -------------------------------------------------------------------------------------------

    def test_reports_its_names(self, backend: InferenceBackend) -> None:
        assert isinstance(backend, InferenceBackend)
        assert backend.backend_name() == self.backend_name
        name = backend.model_name()
        assert isinstance(name, str) and name.strip()

    def test_constraints_include_none(self, backend: InferenceBackend) -> None:
        constraints = backend.constraints()
        assert "none" in constraints
        assert constraints <= KNOWN_CONSTRAINTS

    # -- meaning -----------------------------------------------------------------------------------------

    def test_judge_parses_an_assessment(self, backend: InferenceBackend) -> None:
        judgement = LlavaGuardJudge(backend, max_tokens=self.max_tokens).judge(
            unsafe_image(), "image/png", policy_prompt()
        )
        assert judgement.assessment.rating in RATINGS
        assert judgement.assessment.category in CATEGORIES
        assert judgement.backend == self.backend_name
        assert judgement.model == backend.model_name()
        assert judgement.constraint in backend.constraints()

    def test_every_claimed_constraint_is_honoured(self, backend: InferenceBackend) -> None:
        for constraint in sorted(backend.constraints()):
            request = self.request(constraint=constraint)
            assert request.constraint == constraint
            text = backend.complete(request).text
            assert isinstance(text, str) and text, constraint
            if constraint == "regex":
                assert re.fullmatch(OUTPUT_REGEX, text), text
            elif constraint == "json_schema":
                answer = json.loads(text)
                assert set(answer) == {"rating", "category", "rationale"}, text
                assert answer["rating"] in RATINGS and answer["category"] in CATEGORIES, text

    # -- log-probabilities -------------------------------------------------------------------------------

    def test_logprobs_give_a_score_or_a_reason(self, backend: InferenceBackend) -> None:
        judgement = LlavaGuardJudge(backend, max_tokens=self.max_tokens, top_logprobs=TOP_LOGPROBS).judge(
            unsafe_image(), "image/png", policy_prompt()
        )
        if self.returns_logprobs:
            assert judgement.score_source == "logprobs"
            assert judgement.score is not None and 0.0 <= judgement.score <= 1.0
        else:
            assert judgement.score is None
            assert judgement.score_source and judgement.score_source != "logprobs"

    def test_logprobs_cover_the_generated_tokens(self, backend: InferenceBackend) -> None:
        completion = backend.complete(self.request(top_logprobs=TOP_LOGPROBS))
        if not self.returns_logprobs:
            assert completion.logprobs is None
            return
        assert completion.logprobs
        joined = "".join(position.token for position in completion.logprobs)
        assert joined == completion.text or "\ufffd" in joined  # a token may end inside a UTF-8 character
        for position in completion.logprobs:
            assert position.logprob <= 0.0 and math.isfinite(position.logprob)
            assert 1 <= len(position.top) <= TOP_LOGPROBS
            assert all(logprob <= 0.0 for _, logprob in position.top)

    def test_no_logprobs_unless_asked(self, backend: InferenceBackend) -> None:
        assert backend.complete(self.request(top_logprobs=0)).logprobs is None
        judgement = LlavaGuardJudge(backend, max_tokens=self.max_tokens, top_logprobs=0).judge(
            unsafe_image(), "image/png", policy_prompt()
        )
        assert judgement.score is None and judgement.score_source == "not_requested"

    # -- failures ----------------------------------------------------------------------------------------

    def test_unavailable_is_transient(self, faulty: FaultyBackend) -> None:
        with pytest.raises(InferenceUnavailable):
            faulty("unavailable").complete(self.request())

    def test_overloaded_is_transient(self, faulty: FaultyBackend) -> None:
        with pytest.raises(InferenceUnavailable) as caught:
            faulty("overloaded").complete(self.request())
        if self.overload_retry_after_s is not None:
            assert caught.value.retry_after_s == pytest.approx(self.overload_retry_after_s, abs=1.0)

    def test_refused_input_is_permanent(self, faulty: FaultyBackend) -> None:
        with pytest.raises(ModerationFailed) as caught:
            faulty("refuses_input").complete(self.request(image=UNREADABLE_IMAGE))
        assert caught.value.code == ErrorCode.INFERENCE_REJECTED
