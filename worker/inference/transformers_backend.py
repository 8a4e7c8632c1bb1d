"""`TransformersBackend`: LlavaGuard (`-hf`, LlavaOnevision) or QwenGuard (Qwen2.5-VL) in this process.

For a CPU-only or small deployment that wants no model server. The weights are read once per process, on the
first `complete()` (so importing and constructing stay cheap, and a worker that never moderates never loads
them), under a lock so concurrent first calls load once. Celery's threads each call `complete()`; a
`MicroBatcher` gathers what is in flight into one `generate`. torch, transformers and lm-format-enforcer are
the `transformers` extra: this module imports them only when the model is loaded, so the base install, which
has none of them, can still import it (and the composition root can name it).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image

from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.base import Completion, Constraint, VisionRequest
from worker.inference.hf_batching import MicroBatcher

if TYPE_CHECKING:
    from worker.inference.hf_generation import LoadedModel, Prepared

DEVICES = ("auto", "cpu", "cuda")
OVERLOAD_RETRY_AFTER_S = 1.0
"""When the queue is full: about one batch's time on a GPU."""


def _constraint_library_available() -> bool:
    try:
        import lmformatenforcer  # noqa: F401
    except ImportError:
        return False
    return True


class TransformersBackend:
    """An `InferenceBackend` running a vision-language checkpoint in process with transformers.

    `model_path` is a local folder or a hub id; `device` is `auto` (CUDA when present), `cpu`, `cuda` or
    `cuda:N`; `dtype` is `auto` (bfloat16 on CUDA, float32 on the CPU), `float32`, `float16` or `bfloat16`.
    Up to `max_batch` concurrent requests share one generation; the first waits at most `batch_wait_ms`
    for company. At most `max_pending` requests (default four batches) wait or run at once; one more is
    refused as transient (`InferenceUnavailable`, retry later) rather than queued without bound. `model_name`
    is what verdicts record (default: the folder's name, or the hub id).
    """

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_batch: int = 8,
        batch_wait_ms: float = 5.0,
        max_pending: int | None = None,
        model_name: str | None = None,
    ) -> None:
        if not model_path:
            raise ValueError("model_path must name a local folder or a hub id (LLAVAGUARD_MODEL_PATH)")
        if device not in DEVICES and not device.startswith("cuda:"):
            raise ValueError(f"device must be one of {', '.join(DEVICES)} or cuda:N, not {device!r}")
        self._model_path = model_path
        self._device = device
        self._dtype = dtype
        self._model_name = model_name or (
            os.path.basename(os.path.normpath(model_path)) if os.path.isdir(model_path) else model_path
        )
        self._max_pending = max_pending if max_pending is not None else 4 * max_batch
        if self._max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._batcher: MicroBatcher[Prepared, Completion] = MicroBatcher(
            self._run_batch,
            max_batch=max_batch,
            wait_s=batch_wait_ms / 1000.0,
            key=self._batch_key,
            name="transformers-batcher",
        )
        self._constraints: frozenset[Constraint] = (
            frozenset({"regex", "json_schema", "none"}) if _constraint_library_available() else frozenset({"none"})
        )

    def model_name(self) -> str:
        return self._model_name

    def backend_name(self) -> str:
        return "transformers"

    def constraints(self) -> frozenset[Constraint]:
        return self._constraints

    def complete(self, request: VisionRequest) -> Completion:
        if request.constraint != "none" and request.constraint not in self._constraints:
            raise ModerationFailed(
                ErrorCode.INFERENCE_REJECTED, f"constraint {request.constraint} needs lm-format-enforcer installed"
            )
        image = _decode(request.image)
        from worker.inference.hf_generation import Prepared

        self.loaded()
        with self._pending_lock:
            if self._pending >= self._max_pending:
                raise InferenceUnavailable(
                    f"{self._pending} generations already waiting or running", retry_after_s=OVERLOAD_RETRY_AFTER_S
                )
            self._pending += 1
        try:
            return self._batcher.submit(Prepared(request, image))
        finally:
            with self._pending_lock:
                self._pending -= 1

    def loaded(self) -> LoadedModel:
        """The model, loading it on first use (one load per process however many threads ask)."""
        with self._load_lock:
            if self._loaded is None:
                try:
                    from worker.inference.hf_generation import LoadedModel
                except ImportError as exc:
                    raise InferenceUnavailable(
                        "the transformers backend needs the extra: pip install 'llavaguard-worker[transformers]'"
                    ) from exc
                self._loaded = LoadedModel.load(self._model_path, device=self._device, dtype=self._dtype)
            return self._loaded

    def close(self) -> None:
        """Stop the batching thread (the weights go with the object)."""
        self._batcher.close()

    def _run_batch(self, batch: Sequence[Prepared]) -> list[Completion | BaseException]:
        return self.loaded().generate(batch)

    @staticmethod
    def _batch_key(prepared: Prepared) -> object:
        from worker.inference.hf_generation import sampling_key

        return sampling_key(prepared)


def _decode(data: bytes) -> Image.Image:
    """The image as RGB pixels; one PIL cannot read is refused like a server's 400 about the image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, f"the model cannot read the image: {exc}") from exc
