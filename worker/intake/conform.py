"""Whether an image can go to the model as its original bytes, with no decode-resize-encode round trip.

Re-encoding an image the model would see unchanged costs most of the worker's CPU per image (issue 15) and
loses a JPEG generation. An image conforms when the server accepts its format as is, its pixels are what
`pixels.render` would produce anyway (RGB or grey, no transparency to flatten, no EXIF orientation to
apply, one frame) and its longer side is within the limit. Only header fields are read here: the caller
(images.prepare_image) has already applied the byte, pixel and decode-memory limits and still decodes the
image to validate it (a JPEG at 1/8 DCT scale: every entropy-coded byte is read, so truncation and
corruption fail as before, at a fraction of the cost).
"""

from __future__ import annotations

from PIL import Image

from worker.intake.pixels import effective_max_side, exif_orientation

PASSTHROUGH_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
"""Formats sent as they are; MPO (a JPEG with more pictures appended) is re-encoded to drop the extras."""
PASSTHROUGH_MODES = frozenset({"RGB", "L"})


def conforming_mime(image: Image.Image, max_side_px: int) -> str | None:
    """The MIME type to send the original bytes under, or None when the image must be rendered."""
    mime = PASSTHROUGH_MIME.get(image.format or "")
    if mime is None or image.mode not in PASSTHROUGH_MODES or "transparency" in image.info:
        return None
    if getattr(image, "is_animated", False) or max(image.size) > effective_max_side(max_side_px):
        return None
    return mime if _header_orientation(image) == 1 else None


def _header_orientation(image: Image.Image) -> int:
    """The orientation the header declares, without decoding: Pillow's PNG `getexif()` decodes the whole
    image to look for an eXIf chunk after the pixels, which must not happen before the decode-memory checks.
    Such a late chunk is looked for once decoded (images._still_upright)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return exif_orientation(image)


PDQ_SIDE_PX = 512
"""PDQ (issue 12) hashes from this many pixels on the longer side: the validating decode keeps at least that."""


def validation_size(size: tuple[int, int]) -> tuple[int, int]:
    """The draft size for a validating decode: the smallest DCT scale (down to 1/8) whose longer side still holds
    PDQ's working size, so the perceptual hash of an image sent as is comes from enough pixels."""
    width, height = size
    needed = min(PDQ_SIDE_PX, max(width, height))
    for scale in (8, 4, 2):
        if -(-max(width, height) // scale) >= needed:
            return max(1, width // scale), max(1, height // scale)
    return size
