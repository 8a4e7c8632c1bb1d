"""Byte-size limits shared by every way an image arrives (URL, S3, inline), so they fail alike."""

from __future__ import annotations

from worker.errors import ErrorCode, ModerationFailed


def too_large(max_bytes: int, detail: str) -> ModerationFailed:
    message = f"the image is larger than {max_bytes} bytes ({detail})"
    return ModerationFailed(ErrorCode.IMAGE_TOO_LARGE, message)


def check_byte_size(data: bytes, max_bytes: int | None) -> None:
    """IMAGE_EMPTY for no bytes, IMAGE_TOO_LARGE above `max_bytes` (None: the fetcher already bounded it)."""
    if not data:
        raise ModerationFailed(ErrorCode.IMAGE_EMPTY, "the image is empty (0 bytes)")
    if max_bytes is not None and len(data) > max_bytes:
        raise too_large(max_bytes, f"got {len(data)} bytes")
