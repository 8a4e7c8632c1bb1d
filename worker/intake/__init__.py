"""Intake: from an `ImageRef` (URL, S3 URI or inline bytes) to a validated JPEG ready for the model.

    Intake.load(ref) ─ SourceRegistry (sources.py: one ImageSource per scheme, built in worker/composition.py)
    ├── inline bytes     InlineSource ┐
    ├── s3://bucket/key  S3Fetcher    ┼─> prepare_image (images.py) -> PreparedImage
    ├── file:///path     FileFetcher (only beneath LLAVAGUARD_SHARED_ROOT)
    └── http(s)://       HttpFetcher (guarded by AddressGuard, pinned to the checked IP, paced,
                                      at most FETCH_MAX_PER_HOST at once per host: HostGate)
    Animations and video (issue 10) go to `frames` (worker/media's FrameExtractor) instead of prepare_image.

Every bad input ends as `ModerationFailed` with a FETCH_*/S3_*/IMAGE_* code; no third-party exception
leaves this package. The address guard and the pinned request are public for the webhook sender.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from worker.intake.addresses import AddressGuard, refusal_reason
from worker.intake.deadline import Deadline
from worker.intake.decode_budget import DecodeBudget
from worker.intake.http_fetch import HttpFetcher
from worker.intake.images import PreparedImage, prepare_image
from worker.intake.pinned import HttpResponse, PinnedHttp
from worker.intake.pixels import DEFAULT_OPTIONS, RenderOptions
from worker.intake.s3_fetch import S3Fetcher
from worker.intake.sources import ImageSource, SourceRegistry
from worker.models import ImageRef

__all__ = [
    "AddressGuard",
    "Deadline",
    "DecodeBudget",
    "HttpFetcher",
    "HttpResponse",
    "ImageSource",
    "Intake",
    "PinnedHttp",
    "PreparedImage",
    "RenderOptions",
    "S3Fetcher",
    "SourceRegistry",
    "prepare_image",
    "refusal_reason",
]


class MediaPreparer(Protocol):
    """Moving media's intake (worker/media/extract.py), typed here so that intake never imports it."""

    def prepare(self, data: bytes, *, source: str | None) -> PreparedImage | None:
        """Sampled frames of an animation or video; None for a still image, which prepare_image takes."""
        ...


class Intake:
    """Loads images of every kind with one set of limits; thread-safe, build one per worker process."""

    def __init__(
        self, sources: SourceRegistry, max_pixels: int, max_side_px: int, max_bytes: int,
        max_decode_bytes: int | None = None, decode_budget: DecodeBudget | None = None,
        frames: MediaPreparer | None = None,
        options: RenderOptions = DEFAULT_OPTIONS,
        cpu_gate: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.sources = sources
        self.max_pixels = max_pixels
        self.max_side_px = max_side_px
        self.max_bytes = max_bytes
        self.max_decode_bytes = max_decode_bytes
        self.decode_budget = decode_budget
        self.frames = frames
        """None: every image is judged by its first frame, as before issue 10."""
        self.options = options
        self.cpu_gate = cpu_gate or nullcontext()
        """Issue 15 item 2: how many threads may decode and resize at once. Hundreds of threads hold requests in
        flight; were they all runnable at once, a thread whose answer arrived would wait seconds for the GIL, and
        the adaptive window would read that wait as the server queueing."""

    def close(self) -> None:
        self.sources.close()

    def load(self, ref: ImageRef) -> PreparedImage:
        data = self.fetch(ref)
        with self.cpu_gate:
            return self._prepare(data, ref)

    def _prepare(self, data: bytes, ref: ImageRef) -> PreparedImage:
        media = self.frames.prepare(data, source=ref.source) if self.frames is not None else None
        if media is not None:
            return media
        return prepare_image(
            data,
            source=ref.source,
            max_pixels=self.max_pixels,
            max_side_px=self.max_side_px,
            max_bytes=self.max_bytes,
            max_decode_bytes=self.max_decode_bytes,
            budget=self.decode_budget,
            options=self.options,
        )

    def fetch(self, ref: ImageRef) -> bytes:
        """The raw bytes of the image, from the source registered for its scheme."""
        return self.sources.fetch(ref)
