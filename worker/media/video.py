"""Frames of a video (MP4/MOV, WebM/MKV), decoded with PyAV (FFmpeg's libraries from its wheel).

Hostile files are expected: the demuxer is named, never probed (kinds.py); only allowlisted codecs are ever
decoded (a file can name any of FFmpeg's decoders, most rarely fuzzed); nested opens (QuickTime references,
playlists) are refused; the size in the stream header is checked against the pixel and decode-memory limits
before the first packet, and FFmpeg's own `max_pixels` refuses a later, larger frame; decoding is single
threaded (a worker decodes many videos at once, and FFmpeg's thread pools have deadlocked in other hosts);
reads have a timeout and the deadline is checked between packets. Nothing the header says about duration or
frame count is trusted beyond refusing early: the extractor counts what is actually decoded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from io import BytesIO
from typing import Any

import av
import av.container
import av.video
from PIL import Image

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.deadline import Deadline
from worker.intake.decode_cost import frame_bytes
from worker.media.decoded import DecodedFrame, decoder_errors
from worker.media.sampler import THUMBNAIL_SIDE_PX

ALLOWED_CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4")
"""FFmpeg decoder names accepted; `codec_whitelist` also keeps stream probing to these."""
CODEC_FORMATS = {"mov": "MP4", "matroska": "WEBM"}
DECODER_FRAMES = 18
"""Full-size frames a decoder may hold (H.264 keeps up to 16 references) plus the frame out and its copy."""
PLANAR_BYTES_PER_PIXEL = 3
"""Up to 4:4:4 8-bit (4:2:0, the common case, is 1.5): a deliberate overestimate."""


@dataclass(frozen=True)
class VideoHeader:
    codec: str
    width: int
    height: int
    duration_s: float | None
    frames: int | None
    format: str


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    raise PermissionError(f"a video may not open other resources ({url[:100]!r})")


def open_video(data: bytes, demuxer: str, deadline: Deadline, max_pixels: int) -> av.container.InputContainer:
    """The container, read from memory with the named demuxer; its header parsed (stream probing may decode
    a first frame: only with an allowlisted decoder, and never one above `max_pixels`)."""
    _check_deadline(deadline)
    timeout = deadline.remaining_s()
    try:
        with decoder_errors(ErrorCode.IMAGE_TRUNCATED, "the video container could not be read"):
            return av.open(
                BytesIO(data), mode="r", format=demuxer, timeout=(timeout, timeout),
                io_open=_refuse_nested_open, container_options={"codec_whitelist": ",".join(ALLOWED_CODECS)},
                options={"max_pixels": str(max_pixels)},
            )
    except ModerationFailed:
        _check_deadline(deadline)  # FFmpeg's interrupt (the read timeout) reads as an error: say it was time
        raise


def read_header(container: av.container.InputContainer, demuxer: str) -> VideoHeader:
    """The first video stream's codec, size and declared length; VIDEO_EMPTY/VIDEO_UNSUPPORTED if unusable."""
    if not container.streams.video:
        raise ModerationFailed(ErrorCode.VIDEO_EMPTY, "the container has no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context.name
    if codec not in ALLOWED_CODECS:
        raise ModerationFailed(
            ErrorCode.VIDEO_UNSUPPORTED,
            f"the video codec {codec!r} is not accepted (accepted: {', '.join(ALLOWED_CODECS)})",
        )
    return VideoHeader(
        codec=codec, width=stream.codec_context.width, height=stream.codec_context.height,
        duration_s=_declared_duration_s(container, stream), frames=stream.frames or None,
        format=f"{CODEC_FORMATS.get(demuxer, demuxer.upper())}/{codec.upper()}",
    )


def decode_bytes(header: VideoHeader) -> int:
    """Memory decoding takes: the decoder's frames plus the full-size RGB image of a kept frame."""
    pixels = header.width * header.height
    return DECODER_FRAMES * PLANAR_BYTES_PER_PIXEL * pixels + 2 * frame_bytes((header.width, header.height), "RGB")


def video_frames(
    container: av.container.InputContainer, header: VideoHeader, deadline: Deadline, max_pixels: int,
) -> Iterator[DecodedFrame]:
    """Every frame of the first video stream in presentation order, timestamps from its start."""
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    stream.codec_context.options = {"max_pixels": str(max_pixels)}
    first: float | None = None
    index = 0
    with _timed(deadline), decoder_errors(ErrorCode.IMAGE_TRUNCATED, "the video data is corrupt"):
        for packet in container.demux(stream):
            _check_deadline(deadline)
            for frame in packet.decode():
                _check_size(frame, header)
                t_s = frame.time
                if t_s is not None and first is None:
                    first = t_s
                relative = None if t_s is None or first is None else round(max(t_s - first, 0.0), 3)
                yield DecodedFrame(index, relative, _thumbnail(frame), partial(_image, frame))
                index += 1


def close(container: av.container.InputContainer) -> None:
    with contextlib.suppress(Exception):
        container.close()


def _declared_duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration is not None:
        return container.duration / av.time_base
    return None


@contextlib.contextmanager
def _timed(deadline: Deadline) -> Iterator[None]:
    try:
        yield
    except ModerationFailed:
        _check_deadline(deadline)
        raise


def _check_deadline(deadline: Deadline) -> None:
    if deadline.remaining_s() <= 0:
        raise ModerationFailed(
            ErrorCode.VIDEO_DECODE_TIMEOUT, f"decoding the video took longer than {deadline.total_s:g} s"
        )


def _check_size(frame: av.VideoFrame, header: VideoHeader) -> None:
    """A frame larger than the header declared (a mid-stream size change) was never budgeted for."""
    if frame.width * frame.height > header.width * header.height:
        raise ModerationFailed(
            ErrorCode.IMAGE_DECOMPRESSION_BOMB,
            f"a {frame.width}x{frame.height} frame in a video declared {header.width}x{header.height}",
        )


def _thumbnail(frame: av.VideoFrame) -> Image.Image:
    side = THUMBNAIL_SIDE_PX
    return _image(frame.reformat(width=side, height=side, format="rgb24"))


def _image(frame: av.VideoFrame) -> Image.Image:
    image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]  # PyAV's stub leaves it untyped
    return image
