"""The transformers backend on a tiny random LlavaOnevision checkpoint built here: contract, batching, errors.

The checkpoint (`tests/tiny_vlm.py`) is built once per session into a temporary folder and loaded by path,
offline. torch and transformers are the `transformers` extra, which CI installs (`ops/test.sh`); under
CI=true a missing extra fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

try:
    import torch

    from tests.tiny_vlm import build_tiny_checkpoint, build_tiny_qwen_checkpoint
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("the transformers extra is not installed (pip install -e '.[transformers]')", allow_module_level=True)

from tests.contract.backend_contract import UNREADABLE_IMAGE, BackendContract, FaultKind, FaultyBackend
from tests.transformers_faults import OverloadedBackend
from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.base import Completion, InferenceBackend, VisionRequest
from worker.inference.hf_generation import LoadedModel, Prepared, sampling_key
from worker.inference.llavaguard import ASSESSMENT_SCHEMA
from worker.inference.output_parser import OutputUnparseable, parse_assessment
from worker.inference.training_format import OUTPUT_REGEX
from worker.inference.transformers_backend import TransformersBackend
from worker.models import DEFAULT_POLICY
from worker.policy import PolicyRegistry
from worker.standin.palette import make_image

MAX_TOKENS = 160


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llava-onevision"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_checkpoint: Path) -> Iterator[TransformersBackend]:
    backend = TransformersBackend(str(tiny_checkpoint), device="cpu", max_batch=4, batch_wait_ms=50)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def tiny_qwen_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_checkpoint(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


@pytest.fixture(scope="session")
def tiny_qwen_backend(tiny_qwen_checkpoint: Path) -> Iterator[TransformersBackend]:
    backend = TransformersBackend(str(tiny_qwen_checkpoint), device="cpu", max_batch=4, batch_wait_ms=50)
    yield backend
    backend.close()


def vision_request(**overrides: Any) -> VisionRequest:
    values: dict[str, Any] = {
        "image": make_image("O1"), "mime": "image/png", "prompt": PolicyRegistry().prompt(DEFAULT_POLICY),
        "temperature": 0.0, "top_p": 1.0, "top_k": 0, "max_tokens": MAX_TOKENS,
    }
    return VisionRequest(**(values | overrides))


def _record_batches(backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batch sizes of the backend's `generate` calls from now on (until the test ends), gathered for up to a
    second so that threads started one after another on a busy machine still meet."""
    monkeypatch.setattr(backend._batcher, "_wait_s", 1.0)
    loaded = backend.loaded()
    original, sizes = loaded.generate, []

    def recording(batch: Any) -> list[Completion | BaseException]:
        sizes.append(len(batch))
        return original(batch)

    monkeypatch.setattr(loaded, "generate", recording)
    return sizes


class TestTransformersBackend(BackendContract):
    """LlavaGuard's `-hf` architecture (LlavaOnevision)."""

    backend_name = "transformers"
    overload_retry_after_s = 1.0
    max_tokens = MAX_TOKENS

    @pytest.fixture
    def model(self, tiny_backend: TransformersBackend, tiny_checkpoint: Path) -> tuple[TransformersBackend, Path]:
        return tiny_backend, tiny_checkpoint

    @pytest.fixture
    def backend(self, model: tuple[TransformersBackend, Path]) -> InferenceBackend:
        return model[0]

    @pytest.fixture
    def faulty(self, model: tuple[TransformersBackend, Path], tmp_path: Path) -> Iterator[FaultyBackend]:
        working, checkpoint = model
        overloaded: list[OverloadedBackend] = []

        def make(kind: FaultKind) -> InferenceBackend:
            if kind == "unavailable":  # the weights cannot be loaded: an empty folder
                return TransformersBackend(str(tmp_path), device="cpu")
            if kind == "refuses_input":
                return working
            overloaded.append(OverloadedBackend(str(checkpoint), vision_request(max_tokens=1)))
            return overloaded[-1].backend

        yield make
        for each in overloaded:
            each.release()


class TestTransformersBackendQwen(TestTransformersBackend):
    """QwenGuard's architecture (Qwen2.5-VL), through the same backend with its own chat template."""

    @pytest.fixture
    def model(
        self, tiny_qwen_backend: TransformersBackend, tiny_qwen_checkpoint: Path
    ) -> tuple[TransformersBackend, Path]:
        return tiny_qwen_backend, tiny_qwen_checkpoint


def test_qwen_batched_answers_equal_single_answers(
    tiny_qwen_backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left padding must not move Qwen2.5-VL's multimodal positions: a batched row answers as it does alone."""
    prompts = [PolicyRegistry().prompt(DEFAULT_POLICY), PolicyRegistry().prompt(DEFAULT_POLICY, ["O2"])]
    requests = [vision_request(regex=OUTPUT_REGEX, prompt=prompt, top_logprobs=1) for prompt in prompts]
    alone = [tiny_qwen_backend.complete(request) for request in requests]
    sizes = _record_batches(tiny_qwen_backend, monkeypatch)
    results: dict[int, Completion] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, tiny_qwen_backend.complete(requests[i])))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sizes == [2]
    for i in range(2):
        assert results[i].text == alone[i].text
        assert re.fullmatch(OUTPUT_REGEX, results[i].text)
        assert results[i].logprobs is not None and alone[i].logprobs is not None
        assert [p.token for p in results[i].logprobs] == [p.token for p in alone[i].logprobs]


# -- constraints: with random weights only the constraint makes an answer ---------------------------------


def test_unconstrained_random_model_writes_no_assessment(tiny_backend: TransformersBackend) -> None:
    completion = tiny_backend.complete(vision_request(max_tokens=12))
    assert completion.text == '"' * 12
    assert completion.finish_reason == "length" and completion.completion_tokens == 12
    with pytest.raises(OutputUnparseable):
        parse_assessment(completion.text)


def test_regex_constraint_gives_the_training_layout(tiny_backend: TransformersBackend) -> None:
    completion = tiny_backend.complete(vision_request(regex=OUTPUT_REGEX))
    assert re.fullmatch(OUTPUT_REGEX, completion.text), completion.text
    assert completion.finish_reason == "stop"
    assert parse_assessment(completion.text).rating in {"Safe", "Unsafe"}


def test_schema_constraint_gives_json_with_the_three_fields(tiny_backend: TransformersBackend) -> None:
    completion = tiny_backend.complete(vision_request(json_schema=ASSESSMENT_SCHEMA))
    assert set(json.loads(completion.text)) == {"rating", "category", "rationale"}


def test_constraints_advertised(tiny_backend: TransformersBackend) -> None:
    assert tiny_backend.constraints() == frozenset({"regex", "json_schema", "none"})


# -- log-probabilities -------------------------------------------------------------------------------------


def test_logprobs_one_per_token_with_the_asked_alternatives(tiny_backend: TransformersBackend) -> None:
    completion = tiny_backend.complete(vision_request(regex=OUTPUT_REGEX, top_logprobs=3))
    assert completion.logprobs is not None
    assert len(completion.logprobs) == completion.completion_tokens
    assert "".join(position.token for position in completion.logprobs) == completion.text
    for position in completion.logprobs:
        assert 1 <= len(position.top) <= 3
        assert position.top[0][1] == pytest.approx(max(logprob for _, logprob in position.top))
        assert position.logprob == pytest.approx(position.top[0][1])  # greedy: the chosen token is the likeliest
    # Under the constraint the distribution is over allowed tokens only: `{` is the one way to begin.
    assert completion.logprobs[0].token == "{" and completion.logprobs[0].logprob == pytest.approx(0.0)
    rating = next(p for p in completion.logprobs if p.token.lstrip(' "') and p.token.lstrip(' "')[0] in "SU")
    assert {text.lstrip(' "')[0] for text, _ in rating.top} <= {"S", "U"}


def test_logprobs_only_when_asked(tiny_backend: TransformersBackend) -> None:
    assert tiny_backend.complete(vision_request(max_tokens=4)).logprobs is None


# -- batching ----------------------------------------------------------------------------------------------


def test_concurrent_requests_share_generate_calls(tiny_checkpoint: Path) -> None:
    backend = TransformersBackend(str(tiny_checkpoint), device="cpu", max_batch=4, batch_wait_ms=200)
    try:
        loaded = backend.loaded()
        original, batch_sizes = loaded.generate, []

        def counting(batch: Any) -> list[Completion | BaseException]:
            batch_sizes.append(len(batch))
            return original(batch)

        loaded.generate = counting  # type: ignore[method-assign]
        requests = [vision_request(max_tokens=n) for n in (3, 5, 7, 9)]  # each caller's own length
        results: dict[int, Completion] = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, backend.complete(requests[i])))
                   for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results) == [0, 1, 2, 3]
        assert len(batch_sizes) < 4 and sum(batch_sizes) == 4
        for i, n in enumerate((3, 5, 7, 9)):
            assert results[i].text == '"' * n and results[i].completion_tokens == n
    finally:
        backend.close()


def test_batched_answer_equals_the_single_answer(
    tiny_backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = tiny_backend.complete(vision_request(regex=OUTPUT_REGEX, image=make_image("O3"))).text
    sizes = _record_batches(tiny_backend, monkeypatch)
    requests = [vision_request(regex=OUTPUT_REGEX, image=make_image(code)) for code in ("O3", "O5", "NA")]
    results: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, tiny_backend.complete(requests[i]).text))
               for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sizes == [3]
    assert results[0] == alone
    assert all(re.fullmatch(OUTPUT_REGEX, text) for text in results.values())


def test_weights_load_once_for_concurrent_first_calls(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = LoadedModel.load

    def counting(*args: Any, **kwargs: Any) -> LoadedModel:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(LoadedModel, "load", counting)
    backend = TransformersBackend(str(tiny_checkpoint), device="cpu")
    try:
        threads = [threading.Thread(target=backend.complete, args=(vision_request(max_tokens=1),)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(calls) == 1
    finally:
        backend.close()


# -- errors ------------------------------------------------------------------------------------------------


def test_undecodable_image_fails_only_its_own_request(tiny_backend: TransformersBackend) -> None:
    with pytest.raises(ModerationFailed) as caught:
        tiny_backend.complete(vision_request(image=UNREADABLE_IMAGE))
    assert caught.value.code == ErrorCode.INFERENCE_REJECTED
    assert tiny_backend.complete(vision_request(max_tokens=2)).text == '""'


def test_out_of_memory_is_transient(tiny_checkpoint: Path) -> None:
    backend = TransformersBackend(str(tiny_checkpoint), device="cpu")
    try:
        loaded = backend.loaded()

        def oom(**_kwargs: Any) -> None:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        loaded.model.generate = oom
        with pytest.raises(InferenceUnavailable, match="out of GPU memory"):
            backend.complete(vision_request(max_tokens=2))
    finally:
        backend.close()


def test_missing_model_is_transient_and_names_the_path(tmp_path: Path) -> None:
    backend = TransformersBackend(str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(InferenceUnavailable, match="could not load model"):
        backend.complete(vision_request())


@pytest.mark.parametrize("kwargs", [{"device": "tpu"}, {"max_batch": 0}, {"max_pending": 0}])
def test_bad_arguments_are_refused_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TransformersBackend("some/model", **kwargs)


def test_model_name_is_the_folder_name_or_the_hub_id(tiny_checkpoint: Path) -> None:
    assert TransformersBackend(str(tiny_checkpoint)).model_name() == tiny_checkpoint.name
    assert TransformersBackend("AIML-TUDA/LlavaGuard-v1.2-0.5B-OV-hf").model_name() == (
        "AIML-TUDA/LlavaGuard-v1.2-0.5B-OV-hf"
    )


def test_an_image_the_processor_refuses_fails_alone_in_its_batch(
    tiny_qwen_backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Qwen2.5-VL's processor refuses images under 28 px: that request fails, its batch siblings get answers."""
    sizes = _record_batches(tiny_qwen_backend, monkeypatch)
    requests = [vision_request(max_tokens=3, image=make_image("O1", size)) for size in ((64, 64), (2, 2), (64, 64))]
    results: dict[int, Completion | BaseException] = {}

    def call(i: int) -> None:
        try:
            results[i] = tiny_qwen_backend.complete(requests[i])
        except ModerationFailed as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sizes == [3]  # one batch, which then ran each request alone
    refused = results[1]
    assert isinstance(refused, ModerationFailed) and refused.code == ErrorCode.INFERENCE_REJECTED
    assert all(isinstance(results[i], Completion) and results[i].text == '"""' for i in (0, 2))  # type: ignore[union-attr]


def test_only_requests_with_the_same_sampling_share_a_batch() -> None:
    image = Image.new("RGB", (4, 4))
    greedy = [Prepared(vision_request(top_p=top_p, top_k=top_k), image) for top_p, top_k in ((1.0, 0), (0.9, 50))]
    sampled = [Prepared(vision_request(temperature=t), image) for t in (0.2, 0.7)]
    assert sampling_key(greedy[0]) == sampling_key(greedy[1])  # greedy ignores top_p/top_k
    assert len({sampling_key(p) for p in [greedy[0], *sampled]}) == 3
