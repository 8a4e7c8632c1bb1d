"""The backend contract on a real checkpoint: `LLAVAGUARD_TEST_MODEL_PATH` names its folder (or hub id).

Deselected unless asked for: `LLAVAGUARD_TEST_MODEL_PATH=/models/LlavaGuard-v1.2-0.5B-OV-hf pytest -m real_model
tests/contract/test_backend_transformers_real.py` (the `-m 'not real_model'` in pyproject's addopts keeps it
out of every other run). Asked for without the variable, it fails rather than skips. It has not been run on
the development machines (no weights there); see the README.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.backend_contract import BackendContract, FaultKind, FaultyBackend
from tests.transformers_faults import OverloadedBackend
from worker.inference.base import InferenceBackend
from worker.inference.transformers_backend import TransformersBackend

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def real_backend() -> Iterator[TransformersBackend]:
    path = os.environ.get("LLAVAGUARD_TEST_MODEL_PATH")
    if not path:
        pytest.fail("-m real_model needs LLAVAGUARD_TEST_MODEL_PATH: a LlavaGuard -hf or QwenGuard checkpoint")
    backend = TransformersBackend(path, device=os.environ.get("LLAVAGUARD_TEST_DEVICE", "auto"))
    yield backend
    backend.close()


class TestRealCheckpoint(BackendContract):
    backend_name = "transformers"
    overload_retry_after_s = 1.0

    @pytest.fixture
    def backend(self, real_backend: TransformersBackend) -> InferenceBackend:
        return real_backend

    @pytest.fixture
    def faulty(self, real_backend: TransformersBackend, tmp_path: Path) -> Iterator[FaultyBackend]:
        overloaded: list[OverloadedBackend] = []

        def make(kind: FaultKind) -> InferenceBackend:
            if kind == "unavailable":
                return TransformersBackend(str(tmp_path), device="cpu")
            if kind == "refuses_input":
                return real_backend
            overloaded.append(OverloadedBackend(os.environ["LLAVAGUARD_TEST_MODEL_PATH"], self.request()))
            return overloaded[-1].backend

        yield make
        for each in overloaded:
            each.release()
