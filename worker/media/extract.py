"""From the bytes of an animation or video to the sampled frames the model is sent (`PreparedMedia`).

`FrameExtractor.prepare` returns None for anything that is not moving media, so still images take the
still-image path unchanged. The limits of still images hold for every frame (pixels in the header, decode
memory per image and the process's shared `DecodeBudget`, held for the whole decode), and moving media has
three more: `max_video_s` and `max_decoded_frames` (checked against the header first, then against what is
decoded, since headers lie), and a decode deadline checked between frames and packets.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial

from PIL import ImageFile

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.deadline import Deadline
from worker.intake.decode_budget import DecodeBudget
from worker.intake.images import PreparedImage
from worker.intake.pixels import encode_jpeg, render
from worker.media import animation
from worker.media.decoded import DecodedFrame, decoder_errors
from worker.media.kinds import MediaKind, may_be_animated, video_demuxer
from worker.media.sampler import FrameSampler, SampledFrame
from worker.models import ImageInfo


@dataclass(frozen=True)
class PreparedMedia(PreparedImage):
    """A `PreparedImage` whose `payload` is the first sampled frame, with every sampled frame beside it."""

    frames: tuple[SampledFrame, ...] = ()
    kind: MediaKind = "animation"


@dataclass(frozen=True)
class FrameLimits:
    max_frames: int = 16
    max_video_s: float = 120.0
    max_decoded_frames: int = 10_000
    decode_timeout_s: float = 30.0


class FrameExtractor:
    """Thread-safe (no state between calls); built once per worker process in the composition root."""

    def __init__(
        self, limits: FrameLimits, *, max_pixels: int, max_side_px: int, max_decode_bytes: int | None = None,
        budget: DecodeBudget | None = None,
    ) -> None:
        self.limits = limits
        self.max_pixels = max_pixels
        self.max_side_px = max_side_px
        self.max_decode_bytes = max_decode_bytes
        self.budget = budget

    def prepare(self, data: bytes, *, source: str | None) -> PreparedMedia | None:
        """The sampled frames of an animation or video; None for a still image (or bytes that are neither)."""
        demuxer = video_demuxer(data)
        if demuxer is not None:
            return self._video(data, demuxer, source)
        if may_be_animated(data):
            image = animation.open_animation(data)
            if image is not None:
                with image:
                    return self._animation(image, data, source)
        return None

    def _animation(self, image: ImageFile.ImageFile, data: bytes, source: str | None) -> PreparedMedia:
        width, height = self._check_pixels(image.size[0], image.size[1])
        declared = animation.declared_frames(image)
        if declared is not None and declared > self.limits.max_decoded_frames:
            raise self._too_many(f"the {image.format} declares {declared} frames")
        with self._reserve(animation.decode_bytes(image), f"{width}x{height} {image.format} animation"):
            frames = self._sample(
                animation.animation_frames(image), Deadline.after(self.limits.decode_timeout_s), declared
            )
        info = ImageInfo(sha256=_sha256(data), width=width, height=height, format=image.format, source=source)
        return PreparedMedia(frames[0].payload, "image/jpeg", info, frames=tuple(frames), kind="animation")

    def _video(self, data: bytes, demuxer: str, source: str | None) -> PreparedMedia:
        try:
            video = importlib.import_module("worker.media.video")
        except ImportError as exc:  # `av` not installed: video is refused, animations and stills still work
            raise ModerationFailed(ErrorCode.VIDEO_UNSUPPORTED, f"video decoding is not installed ({exc})") from exc
        deadline = Deadline.after(self.limits.decode_timeout_s)
        container = video.open_video(data, demuxer, deadline, self.max_pixels)
        try:
            header = video.read_header(container, demuxer)
            width, height = self._check_pixels(header.width, header.height)
            self._check_declared(header.duration_s, header.frames)
            with self._reserve(video.decode_bytes(header), f"{width}x{height} {header.codec} video"):
                decoded = video.video_frames(container, header, deadline, self.max_pixels)
                frames = self._sample(decoded, deadline, header.frames)
        finally:
            video.close(container)
        info = ImageInfo(sha256=_sha256(data), width=width, height=height, format=header.format, source=source)
        return PreparedMedia(frames[0].payload, "image/jpeg", info, frames=tuple(frames), kind="video")

    def _sample(
        self, frames: Iterator[DecodedFrame], deadline: Deadline, expected_frames: int | None = None,
    ) -> list[SampledFrame]:
        """Offer every decoded frame to the sampler, holding the stream to its real length and the deadline."""
        sampler = FrameSampler(self.limits.max_frames, expected_frames=expected_frames)
        for frame in frames:
            if frame.index >= self.limits.max_decoded_frames:
                raise self._too_many(f"it has more than {self.limits.max_decoded_frames} frames")
            if frame.t_s is not None and frame.t_s > self.limits.max_video_s:
                raise self._too_long(f"frame {frame.index} is shown at {frame.t_s:g} s")
            sampler.offer(frame.index, frame.t_s, frame.thumbnail, partial(self._render, frame))
            if deadline.remaining_s() <= 0:
                raise ModerationFailed(
                    ErrorCode.VIDEO_DECODE_TIMEOUT,
                    f"decoding took longer than {deadline.total_s:g} s (after {frame.index + 1} frames)",
                )
        picked = sampler.picked()
        if not picked:
            raise ModerationFailed(ErrorCode.VIDEO_EMPTY, "no frame could be decoded")
        return picked

    def _render(self, frame: DecodedFrame) -> bytes:
        with decoder_errors(ErrorCode.IMAGE_NOT_AN_IMAGE, f"frame {frame.index} could not be converted"):
            return encode_jpeg(render(frame.image(), self.max_side_px, 1))

    def _check_pixels(self, width: int, height: int) -> tuple[int, int]:
        if width <= 0 or height <= 0:
            raise ModerationFailed(ErrorCode.VIDEO_EMPTY, f"the media declares a size of {width}x{height}")
        if width * height > self.max_pixels:
            raise _bomb(f"{width}x{height} is {width * height} pixels, more than the limit of {self.max_pixels}")
        return width, height

    def _check_declared(self, duration_s: float | None, frames: int | None) -> None:
        if duration_s is not None and duration_s > self.limits.max_video_s:
            raise self._too_long(f"it declares {duration_s:g} s")
        if frames is not None and frames > self.limits.max_decoded_frames:
            raise self._too_many(f"it declares {frames} frames")

    def _reserve(self, nbytes: int, what: str) -> AbstractContextManager[None]:
        if self.max_decode_bytes is not None and nbytes > self.max_decode_bytes:
            raise _bomb(f"decoding the {what} needs about {nbytes} bytes, more than the per-image limit of "
                        f"{self.max_decode_bytes}")
        return self.budget.reserve(nbytes) if self.budget is not None else nullcontext()

    def _too_long(self, detail: str) -> ModerationFailed:
        return ModerationFailed(
            ErrorCode.VIDEO_TOO_LONG, f"the media is longer than {self.limits.max_video_s:g} s: {detail}"
        )

    def _too_many(self, detail: str) -> ModerationFailed:
        return ModerationFailed(
            ErrorCode.VIDEO_TOO_LONG,
            f"the media has too many frames (limit {self.limits.max_decoded_frames}): {detail}",
        )


def _bomb(detail: str) -> ModerationFailed:
    return ModerationFailed(ErrorCode.IMAGE_DECOMPRESSION_BOMB, f"the media is too large to decode: {detail}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
