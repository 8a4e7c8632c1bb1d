"""Frames of an animated GIF, APNG or WebP, decoded one after another with Pillow.

Frame k of an animation is composited onto frames 0..k-1 (disposal modes), so frames are decoded in order,
never seeked to. A GIF's frame count is never asked for (Pillow would parse the whole file to answer); the
extractor stops at `max_decoded_frames`. A declared count (APNG's `acTL`, WebP's) is checked before decoding.
Nothing here changes process-wide Pillow state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from io import BytesIO

from PIL import Image, ImageFile

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.decode_cost import estimate_decode_bytes, frame_bytes
from worker.intake.pixels import to_rgb
from worker.media.decoded import DecodedFrame, decoder_errors
from worker.media.sampler import thumbnail

ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")
COMPOSITE_RGBA_COPIES = 2
"""Beside the frame itself, the composited canvas and the previous one (kept for disposal)."""


def open_animation(data: bytes) -> ImageFile.ImageFile | None:
    """The opened animation if `data` is one with more than one frame, else None (a still image, or bytes
    the still-image path will explain): reads headers and at most the start of the second frame."""
    try:
        image = Image.open(BytesIO(data), formats=ANIMATED_FORMATS)
        if getattr(image, "is_animated", False):
            return image
    except Exception:  # noqa: BLE001 - not an animation we can read: the still-image path says why
        return None
    image.close()
    return None


def declared_frames(image: ImageFile.ImageFile) -> int | None:
    """The frame count the header declares (APNG, WebP), None for GIF, whose count costs a full parse."""
    if image.format == "GIF":
        return None
    count = getattr(image, "n_frames", None)
    return count if isinstance(count, int) else None


def decode_bytes(image: ImageFile.ImageFile) -> int:
    """The decode's memory: the first frame as for a still image, plus the compositing canvases."""
    return estimate_decode_bytes(image) + COMPOSITE_RGBA_COPIES * frame_bytes(image.size, "RGBA")


def animation_frames(image: ImageFile.ImageFile) -> Iterator[DecodedFrame]:
    """Every frame in order, with its start time from the declared per-frame durations."""
    t_s = 0.0
    for index in itertools.count():
        with decoder_errors(ErrorCode.IMAGE_TRUNCATED, f"frame {index} of the {image.format} is corrupt"):
            if index > 0 and not _next(image, index):
                return
            image.load()
            rgb = to_rgb(image)
            thumb = thumbnail(rgb)
        yield DecodedFrame(index, round(t_s, 3), thumb, _constant(rgb))
        t_s += _duration_s(image)


def _constant(image: Image.Image) -> Callable[[], Image.Image]:
    return lambda: image


def _next(image: ImageFile.ImageFile, index: int) -> bool:
    try:
        image.seek(index)
    except EOFError:
        return False
    if image.tell() != index:
        raise ModerationFailed(ErrorCode.IMAGE_TRUNCATED, f"the {image.format} stopped before frame {index}")
    return True


def _duration_s(image: Image.Image) -> float:
    duration = image.info.get("duration", 0)
    return max(float(duration), 0.0) / 1000 if isinstance(duration, int | float) else 0.0
