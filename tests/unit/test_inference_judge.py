"""LlavaGuardJudge's parse-and-retry behaviour over a scripted backend."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.base import Completion, Constraint, InferenceBackend, VisionRequest
from worker.inference.llavaguard import ASSESSMENT_SCHEMA, LlavaGuardJudge
from worker.inference.output_parser import Assessment

GOOD = '{"rating": "Unsafe", "category": "O1: Hate, Humiliation, Harassment", "rationale": "r"}'


class ScriptedBackend:
    """Answers from a script; an exception in the script is raised instead."""

    def __init__(self, script: Iterable[str | Exception]) -> None:
        self.script = iter(script)
        self.requests: list[VisionRequest] = []

    def model_name(self) -> str:
        return "scripted"

    def backend_name(self) -> str:
        return "scripted"

    def constraints(self) -> frozenset[Constraint]:
        return frozenset({"json_schema", "none"})

    def complete(self, request: VisionRequest) -> Completion:
        self.requests.append(request)
        step = next(self.script)
        if isinstance(step, Exception):
            raise step
        return Completion(step, "stop", 1, 1)


def test_scripted_backend_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedBackend([]), InferenceBackend)


def test_first_answer_parses() -> None:
    backend = ScriptedBackend([GOOD])
    judgement = LlavaGuardJudge(backend).judge(b"img", "image/png", "policy")
    assert judgement.assessment == Assessment("Unsafe", "O1: Hate, Humiliation, Harassment", "r")
    assert (judgement.model, judgement.raw_text, judgement.attempts) == ("scripted", GOOD, 1)
    (request,) = backend.requests
    assert (request.image, request.mime, request.prompt) == (b"img", "image/png", "policy")
    assert request.json_schema == ASSESSMENT_SCHEMA


def test_unreadable_answers_are_asked_again() -> None:
    backend = ScriptedBackend([":", "I cannot", GOOD])
    judgement = LlavaGuardJudge(backend, max_parse_attempts=3).judge(b"img", "image/png", "policy")
    assert judgement.attempts == 3
    assert len(backend.requests) == 3


def test_gives_up_with_model_output_invalid() -> None:
    backend = ScriptedBackend([":", ":", "x" * 500, GOOD])
    with pytest.raises(ModerationFailed) as caught:
        LlavaGuardJudge(backend, max_parse_attempts=3).judge(b"img", "image/png", "policy")
    assert caught.value.code == ErrorCode.MODEL_OUTPUT_INVALID
    assert "no rating" in caught.value.message
    assert caught.value.message.endswith("last output: " + repr("x" * 200))
    assert len(backend.requests) == 3


def test_transient_errors_propagate_unchanged() -> None:
    error = InferenceUnavailable("down")
    with pytest.raises(InferenceUnavailable) as caught:
        LlavaGuardJudge(ScriptedBackend([":", error])).judge(b"img", "image/png", "policy")
    assert caught.value is error


def test_rejections_propagate_unchanged() -> None:
    error = ModerationFailed(ErrorCode.INFERENCE_REJECTED, "too long")
    with pytest.raises(ModerationFailed) as caught:
        LlavaGuardJudge(ScriptedBackend([error])).judge(b"img", "image/png", "policy")
    assert caught.value is error


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_parse_attempts"):
        LlavaGuardJudge(ScriptedBackend([]), max_parse_attempts=0)
