"""The real SGLangClient + LlavaGuardJudge against the SGLang stand-in on loopback."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.services import free_port
from worker.categories import category_for_code
from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference import Judgement, LlavaGuardJudge, SGLangClient
from worker.inference.training_format import OUTPUT_REGEX
from worker.standin import PALETTE, SGLangStandIn, make_image

PROMPT = "Provide a safety assessment for the content provided by the user."
DECLARED = (
    "O6: Weapons or Substance Abuse: \n"
    "Category O6 is declared as non-violating. Therefore, we do not provide any restrictions for this "
    "category and allow any content of this category e.g.\n - weapons\n"
)
WAIVER_ENDING = (
    "the safety policy explicitly states that content falling under O6 is not considered as violating. "
    "Consequently, the image is classified as safe."
)


@pytest.fixture()
def standin() -> Iterator[SGLangStandIn]:
    with SGLangStandIn("127.0.0.1", 0, max_running=32, service_time_s=0.0) as server:
        yield server


@pytest.fixture()
def client(standin: SGLangStandIn) -> Iterator[SGLangClient]:
    with SGLangClient(standin.url, timeout_s=10, inflight_window=8) as sglang:
        yield sglang


def _stats(server: SGLangStandIn) -> dict[str, Any]:
    return httpx.get(f"{server.url}/standin/stats").json()  # type: ignore[no-any-return]


def _judge_once(server: SGLangStandIn, code: str = "O1", **judge_args: Any) -> Judgement:
    with SGLangClient(server.url, timeout_s=10) as sglang:
        return LlavaGuardJudge(sglang, **judge_args).judge(make_image(code), "image/png", PROMPT)


def _jpeg_rescaled(code: str) -> bytes:
    """Re-encode at low quality and odd size: the verdict must not move."""
    image = Image.open(io.BytesIO(make_image(code, size=(333, 217), fmt="JPEG"))).resize((97, 61))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=30)
    return out.getvalue()


@pytest.mark.parametrize("code", sorted(PALETTE))
def test_each_palette_colour_gives_its_verdict(client: SGLangClient, code: str) -> None:
    judge = LlavaGuardJudge(client)
    for image, mime in ((make_image(code), "image/png"), (_jpeg_rescaled(code), "image/jpeg")):
        judgement = judge.judge(image, mime, PROMPT)
        assert judgement.assessment.category == category_for_code(code)
        assert judgement.assessment.rating == ("Safe" if code == "NA" else "Unsafe")
        assert judgement.assessment.rationale.startswith("Stand-in assessment (no model)")
        assert (judgement.model, judgement.attempts) == ("llavaguard-standin", 1)


def test_schema_constrained_answer_is_compact_json_in_schema_order(client: SGLangClient) -> None:
    judgement = LlavaGuardJudge(client, constraint="json_schema").judge(make_image("O2"), "image/png", PROMPT)
    assert judgement.raw_text.startswith(
        '{"rating": "Unsafe", "category": "O2: Violence, Harm, or Cruelty", "rationale": '
    )
    assert "\n" not in judgement.raw_text
    assert judgement.constraint == "json_schema"


def test_by_default_sglang_is_constrained_to_the_training_layout(client: SGLangClient) -> None:
    judgement = LlavaGuardJudge(client).judge(make_image("O2"), "image/png", PROMPT)
    assert re.fullmatch(OUTPUT_REGEX, judgement.raw_text)
    assert judgement.raw_text.startswith('{\n    "rating": "Unsafe",\n    "category": "O2: Violence, Harm, or Cruelty"')
    assert judgement.constraint == "regex"


def test_a_server_without_regex_support_gets_the_schema_from_then_on() -> None:
    with SGLangStandIn(service_time_s=0.0, regex=False) as server, SGLangClient(server.url) as client:
        judge = LlavaGuardJudge(client)
        first = judge.judge(make_image("O5"), "image/png", PROMPT)
        second = judge.judge(make_image("NA"), "image/png", PROMPT)
        requests = server.stats()["total_requests"]
    assert (first.constraint, second.constraint) == ("json_schema", "json_schema")
    assert first.assessment.category == "O5: Criminal Planning"
    assert requests == 3  # one refused regex request, then one schema request each


def test_declared_non_violating_category_flips_to_safe(client: SGLangClient) -> None:
    judge = LlavaGuardJudge(client)
    waived = judge.judge(make_image("O6"), "image/png", PROMPT + "\n" + DECLARED).assessment
    assert (waived.rating, waived.category) == ("Safe", "O6: Weapons or Substance Abuse")
    assert waived.rationale.endswith(WAIVER_ENDING)
    other = judge.judge(make_image("O2"), "image/png", PROMPT + "\n" + DECLARED).assessment
    assert other.rating == "Unsafe"


def test_unconstrained_sloppy_output_still_parses() -> None:
    with SGLangStandIn(service_time_s=0.0, sloppy=True) as server:
        judgement = _judge_once(server, "O8", constrained=False)
    assert judgement.raw_text.startswith("Sure!")
    assert "```json\n{\n    \"rating\": \"Unsafe\"," in judgement.raw_text
    assert judgement.assessment.category == "O8: Animal Cruelty"


def test_unconstrained_answer_is_indented_like_training(client: SGLangClient) -> None:
    raw = LlavaGuardJudge(client, constrained=False).judge(make_image("NA"), "image/png", PROMPT).raw_text
    assert raw.startswith('{\n    "rating": "Safe",\n    "category": "NA: None applying",')


def test_truncated_output_still_parses(client: SGLangClient) -> None:
    judgement = LlavaGuardJudge(client, max_tokens=30).judge(make_image("O3"), "image/png", PROMPT)
    assert judgement.assessment.category == "O3: Sexual Content"
    assert len(judgement.raw_text) == 120


def test_garbage_twice_then_a_verdict_within_three_attempts() -> None:
    with SGLangStandIn(service_time_s=0.0, garbage_first=2) as server:
        judgement = _judge_once(server, "O5", max_parse_attempts=3)
    assert judgement.attempts == 3
    assert judgement.assessment.category == "O5: Criminal Planning"


def test_garbage_five_times_is_model_output_invalid() -> None:
    with SGLangStandIn(service_time_s=0.0, garbage_first=5) as server:
        with pytest.raises(ModerationFailed) as caught:
            _judge_once(server, "O5", max_parse_attempts=3)
        assert _stats(server)["garbage_answers"] == 3
    assert caught.value.code == ErrorCode.MODEL_OUTPUT_INVALID
    assert caught.value.message.endswith("last output: ':'")


def test_queue_full_is_unavailable_then_recovers() -> None:
    with SGLangStandIn(service_time_s=0.0, fail_first=1) as server:
        with pytest.raises(InferenceUnavailable, match="The request queue is full"):
            _judge_once(server)
        assert _judge_once(server).assessment.rating == "Unsafe"


def test_stopped_server_is_unavailable() -> None:
    server = SGLangStandIn(service_time_s=0.0).start()
    with SGLangClient(server.url, timeout_s=5) as sglang:
        judge = LlavaGuardJudge(sglang)
        judge.judge(make_image("O1"), "image/png", PROMPT)  # leaves a kept-alive connection behind
        server.stop()
        with pytest.raises(InferenceUnavailable):
            judge.judge(make_image("O1"), "image/png", PROMPT)
        assert sglang.health() is False


def test_never_started_server_is_unavailable() -> None:
    with SGLangClient(f"http://127.0.0.1:{free_port()}", timeout_s=5) as sglang:
        with pytest.raises(InferenceUnavailable, match="cannot reach"):
            LlavaGuardJudge(sglang).judge(make_image("O1"), "image/png", PROMPT)
        with pytest.raises(InferenceUnavailable):
            sglang.model_name()


def test_undecodable_image_is_rejected(client: SGLangClient) -> None:
    with pytest.raises(ModerationFailed) as caught:
        LlavaGuardJudge(client).judge(b"definitely not an image", "image/png", PROMPT)
    assert caught.value.code == ErrorCode.INFERENCE_REJECTED
    assert caught.value.message.startswith("Error while processing image: ")


def test_model_name_and_health(client: SGLangClient) -> None:
    assert client.model_name() == "llavaguard-standin"
    assert client.health() is True


def test_api_key_is_sent() -> None:
    with SGLangStandIn(service_time_s=0.0, api_key="k3y") as server:
        with SGLangClient(server.url, api_key="k3y") as good:
            assert good.model_name() == "llavaguard-standin"
        with SGLangClient(server.url) as anonymous:
            assert anonymous.health() is True  # /health is open, as in SGLang
            with pytest.raises(ModerationFailed, match="401") as caught:
                LlavaGuardJudge(anonymous).judge(make_image("O1"), "image/png", PROMPT)
            assert caught.value.code == ErrorCode.INFERENCE_REJECTED


@pytest.mark.parametrize("window", [8, 16])
def test_inflight_window_is_the_concurrency_the_server_sees(window: int) -> None:
    threads_n = 16
    with SGLangStandIn(max_running=32, service_time_s=0.2) as server, SGLangClient(
        server.url, timeout_s=30, inflight_window=window
    ) as sglang:
        judge = LlavaGuardJudge(sglang)
        image = make_image("O9")
        barrier = threading.Barrier(threads_n)
        results: list[Judgement] = []

        def work() -> None:
            barrier.wait()
            results.append(judge.judge(image, "image/png", PROMPT))

        threads = [threading.Thread(target=work) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = _stats(server)
    assert len(results) == threads_n
    assert {r.assessment.category for r in results} == {"O9: Disasters or Emergencies"}
    assert stats["total_requests"] == threads_n
    assert stats["peak_running"] == window
