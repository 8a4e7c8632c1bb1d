"""Tell moving media from still images by their first bytes, before any decoder sees them.

Only headers are read. A container found here is opened with its demuxer named explicitly (`mov` or
`matroska`), never probed: probing would let a hostile file choose any of FFmpeg's hundreds of demuxers
(some of which open other files or URLs). HEIF/AVIF share MP4's `ftyp` box and stay still images (refused
as before by intake/sniff.py).
"""

from __future__ import annotations

from typing import Literal

MediaKind = Literal["animation", "video"]

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
"""Matroska and WebM."""
_STILL_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis"})
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip"})
"""Old QuickTime files start with one of these instead of `ftyp`."""
_ANIMATED_WEBP_FLAG = 0x02
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def video_demuxer(data: bytes) -> str | None:
    """FFmpeg's demuxer for `data` (`mov` for MP4/MOV, `matroska` for WebM/MKV), None if not a video."""
    if data.startswith(EBML_MAGIC):
        return "matroska"
    box = data[4:8]
    if box == b"ftyp":
        return None if data[8:12] in _STILL_BRANDS else "mov"
    return "mov" if box in _QUICKTIME_ATOMS else None


def may_be_animated(data: bytes) -> bool:
    """A GIF (any: frames are counted by parsing), an APNG (an `acTL` chunk before the first `IDAT`), or an
    animated WebP (the VP8X animation flag); the decoder still has the final say."""
    if data.startswith((b"GIF87a", b"GIF89a")):
        return True
    if data.startswith(PNG_MAGIC):
        head = data[: data.find(b"IDAT")] if b"IDAT" in data[:65536] else data[:65536]
        return b"acTL" in head
    return data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and bool(data[20] & _ANIMATED_WEBP_FLAG)


def media_kind(data: bytes) -> MediaKind | None:
    if video_demuxer(data) is not None:
        return "video"
    return "animation" if len(data) > 20 and may_be_animated(data) else None
