"""How much memory decoding an image will take, estimated from its header before any pixel is decoded.

Pillow stores a frame as one row pointer (8 bytes) per row plus the rows themselves, so a 1x89,000,000 grey
PNG of 173 KB costs 801 MB once decoded, almost all of it row pointers. The estimate counts the frame as
stored, the copies the decoder keeps beside it (libwebp's animation decoder holds its canvas, the previous
canvas and the frame's bytes, all RGBA, whatever the frame count), and the full-size copies `pixels.render`
makes; measured against peak RSS it is a slight overestimate, never a large underestimate. It must never
read pixels: it runs before `load()` so that a bomb is refused before it costs anything.
"""

from __future__ import annotations

from PIL import Image

from worker.intake.pixels import shrinks_before_converting

ROW_POINTER_BYTES = 8
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_TWO_BYTE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_PREMULTIPLIED_WHEN_SHRUNK = frozenset({"RGBA", "LA"})
DECODER_RGBA_COPIES = {"WEBP": 3}
"""Full-size RGBA buffers a format's decoder holds while Pillow's own frame is filled (measured)."""
CONVERSION_RGBA_COPIES = 2
"""Full-size copies of a frame converted before it is shrunk (e.g. palette -> RGBA -> RGB on white)."""


def frame_bytes(size: tuple[int, int], mode: str) -> int:
    """The memory Pillow allocates for one frame of `size` in `mode` (rows padded to 4 bytes a pixel)."""
    width, height = size
    return height * (width * pixel_bytes(mode) + ROW_POINTER_BYTES)


def pixel_bytes(mode: str) -> int:
    if mode in _ONE_BYTE_MODES:
        return 1
    if mode in _TWO_BYTE_MODES:
        return 2
    return 4  # RGB, RGBA, LA, CMYK, YCbCr, I, F ...: Pillow keeps 4 bytes per pixel


def estimate_decode_bytes(image: Image.Image) -> int:
    """Peak bytes decoding and rendering `image` adds, from its (drafted) header size, mode and format."""
    stored = frame_bytes(image.size, image.mode)
    rgba = frame_bytes(image.size, "RGBA")
    decoder = DECODER_RGBA_COPIES.get(image.format or "", 0) * rgba
    return stored + decoder + _working_bytes(image, rgba)


def _working_bytes(image: Image.Image, rgba: int) -> int:
    width, height = image.size
    reduced = width * height  # resize(reducing_gap=3) first reduces both sides by a factor >= 2, or not at all
    if not shrinks_before_converting(image):
        return CONVERSION_RGBA_COPIES * rgba + reduced
    if image.mode in _PREMULTIPLIED_WHEN_SHRUNK:
        return rgba + reduced  # Pillow resamples alpha premultiplied: one full-size RGBa copy
    return reduced
