"""The judge's constraint: regex, else JSON schema, else none; a refused constraint is dropped once, never looped."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest

from worker.errors import ErrorCode, ModerationFailed
from worker.inference.base import Completion, Constraint, VisionRequest
from worker.inference.constraint_choice import ConstraintLadder, ConstraintSetting
from worker.inference.llavaguard import ASSESSMENT_SCHEMA, LlavaGuardJudge
from worker.inference.training_format import OUTPUT_REGEX, training_layout

ANSWER = training_layout("Safe", "NA: None applying", "r")
REGEX_REFUSAL = "Invalid grammar request: key=('regex', '...'): regex is not supported by this server"
SCHEMA_REFUSAL = "response_format json_schema is not supported by this server"


class RefusingBackend:
    """Advertises `advertised`; answers 400 (naming the constraint) to every request constrained by `refuses`."""

    def __init__(self, advertised: Iterable[Constraint], refuses: Iterable[Constraint] = ()) -> None:
        self.advertised = frozenset(advertised)
        self.refuses = frozenset(refuses)
        self.requests: list[VisionRequest] = []

    def model_name(self) -> str:
        return "refusing"

    def backend_name(self) -> str:
        return "scripted"

    def constraints(self) -> frozenset[Constraint]:
        return self.advertised

    def complete(self, request: VisionRequest) -> Completion:
        self.requests.append(request)
        if request.constraint in self.refuses:
            message = REGEX_REFUSAL if request.constraint == "regex" else SCHEMA_REFUSAL
            raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, message)
        return Completion(ANSWER, "stop", 1, 1)


def _judge(backend: RefusingBackend, **kwargs: object) -> LlavaGuardJudge:
    return LlavaGuardJudge(backend, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("advertised", "setting", "constrained", "expected"),
    [
        ({"regex", "json_schema", "none"}, "auto", True, "regex"),
        ({"json_schema", "none"}, "auto", True, "json_schema"),
        ({"none"}, "auto", True, "none"),
        ({"regex", "json_schema", "none"}, "json_schema", True, "json_schema"),
        ({"json_schema", "none"}, "regex", True, "json_schema"),  # never a constraint the backend ignores
        ({"regex", "json_schema", "none"}, "none", True, "none"),
        ({"regex", "json_schema", "none"}, "regex", False, "none"),  # CONSTRAINED_DECODING=false wins
    ],
)
def test_the_first_constraint(
    advertised: set[Constraint], setting: ConstraintSetting, constrained: bool, expected: Constraint
) -> None:
    backend = RefusingBackend(advertised)
    judgement = _judge(backend, constraint=setting, constrained=constrained).judge(b"img", "image/png", "p")
    assert judgement.constraint == expected
    (request,) = backend.requests
    assert request.constraint == expected
    assert request.regex == (OUTPUT_REGEX if expected == "regex" else None)
    assert request.json_schema == (ASSESSMENT_SCHEMA if expected == "json_schema" else None)


def test_a_refused_regex_falls_back_to_the_schema_once_for_the_process(caplog: pytest.LogCaptureFixture) -> None:
    backend = RefusingBackend({"regex", "json_schema", "none"}, refuses={"regex"})
    judge = _judge(backend)
    with caplog.at_level(logging.WARNING, logger="worker.inference.constraint_choice"):
        first = judge.judge(b"img", "image/png", "p")
        second = judge.judge(b"img", "image/png", "p")
    assert (first.constraint, second.constraint) == ("json_schema", "json_schema")
    assert first.attempts == 1  # a refused constraint is not an unreadable answer
    assert [r.constraint for r in backend.requests] == ["regex", "json_schema", "json_schema"]
    (record,) = caplog.records
    assert "refused the regex constraint" in record.getMessage() and "using json_schema" in record.getMessage()


def test_both_refused_ends_unconstrained_and_a_refusal_of_none_propagates() -> None:
    backend = RefusingBackend({"regex", "json_schema", "none"}, refuses={"regex", "json_schema"})
    judge = _judge(backend)
    assert judge.judge(b"img", "image/png", "p").constraint == "none"
    assert [r.constraint for r in backend.requests] == ["regex", "json_schema", "none"]

    always = RefusingBackend({"regex", "json_schema", "none"}, refuses={"regex", "json_schema", "none"})
    with pytest.raises(ModerationFailed) as caught:
        _judge(always).judge(b"img", "image/png", "p")
    assert caught.value.code is ErrorCode.INFERENCE_REJECTED
    assert len(always.requests) == 3  # regex, json_schema, none: then the error, no loop


def test_a_rejection_that_does_not_name_the_constraint_is_the_moderation_failing() -> None:
    class ImageRefusing(RefusingBackend):
        def complete(self, request: VisionRequest) -> Completion:
            self.requests.append(request)
            raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, "Error while processing image: truncated")

    backend = ImageRefusing({"regex", "json_schema", "none"})
    judge = _judge(backend)
    with pytest.raises(ModerationFailed, match="processing image"):
        judge.judge(b"img", "image/png", "p")
    assert len(backend.requests) == 1
    assert judge.constraints.current() == "regex"  # nothing dropped


def test_only_rejections_drop_a_constraint() -> None:
    ladder = ConstraintLadder(frozenset({"regex", "json_schema", "none"}))
    unavailable = ModerationFailed(ErrorCode.MODEL_OUTPUT_INVALID, "regex output unreadable")
    assert not ladder.refuse("regex", unavailable)
    assert not ladder.refuse("none", ModerationFailed(ErrorCode.INFERENCE_REJECTED, "grammar"))
    assert ladder.current() == "regex"
    assert ladder.refuse("regex", ModerationFailed(ErrorCode.INFERENCE_REJECTED, REGEX_REFUSAL))
    assert ladder.refuse("regex", ModerationFailed(ErrorCode.INFERENCE_REJECTED, REGEX_REFUSAL))  # a late thread
    assert ladder.current() == "json_schema"
