"""Turn a decoded frame of any Pillow mode into the RGB JPEG the model is sent.

The model sees only RGB: transparent areas become white (not black, which `convert("RGB")` would give and
which can read as content), deep-colour modes are scaled rather than clipped, and the longer side is capped
to bound the image tokens. Works on decoded pixels only; decoding and its limits live in `images`.

Memory: a decoded frame is the largest object a moderation holds, so the order of the steps is chosen to make
as few full-size copies as possible (issue 8 item 2): modes that resample faithfully are shrunk first and
converted afterwards, orientation is applied to the shrunk image, and nothing is copied "just in case".
`decode_cost` estimates these copies from the header; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from PIL import Image

JPEG_QUALITY = 90
RESIZE_FILTERS: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST,
}
"""`LLAVAGUARD_RESIZE_FILTER` values. The server resamples the image again (to its anyres grid and a 384 px
overview), so a sharper client-side filter buys little; LANCZOS costs ~4x BOX on a 1280x800 photo."""
JPEG_MAX_SIDE_PX = 65_500
"""JPEG cannot encode a side above 65,535 pixels; a valid 100,000x1 strip is shrunk rather than failed."""
WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_SHRINK_FIRST_MODES = frozenset({"L", "RGB", "RGBA", "LA"})
"""Modes Pillow resamples faithfully (alpha premultiplied); others (palette, 16-bit, key-colour transparency)
would lose colours or transparency if shrunk before conversion."""
_ORIENTATION_TAG = 0x0112
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def shrinks_before_converting(image: Image.Image) -> bool:
    """Whether `render` shrinks this frame before converting it (so it makes no full-size RGB copy)."""
    return image.mode in _SHRINK_FIRST_MODES and "transparency" not in image.info


@dataclass(frozen=True)
class RenderOptions:
    """What may change what the model sees, from settings; the defaults are the behaviour before issue 15."""

    resize_filter: str = "lanczos"
    """A key of RESIZE_FILTERS, used after `reduce()` has shrunk by whole factors (`reducing_gap`)."""
    jpeg_quality: int = JPEG_QUALITY
    passthrough: bool = False
    """Send an image that already conforms (conform.py) as its original bytes, not re-encoded."""
    draft_undershoot: float = 0.0
    """A JPEG may be decoded at a DCT scale whose longer side is up to this fraction below the max side,
    instead of at a larger scale and then resized (images.draft_target)."""

    @property
    def resample(self) -> Image.Resampling:
        return RESIZE_FILTERS[self.resize_filter]


DEFAULT_OPTIONS = RenderOptions()


def render(
    image: Image.Image, max_side_px: int, orientation: int, options: RenderOptions = DEFAULT_OPTIONS
) -> Image.Image:
    """The decoded frame as the model's RGB image, at most `max_side_px` on its longer side, upright."""
    resample = options.resample
    if shrinks_before_converting(image):
        rgb = to_rgb(downscale(image, max_side_px, resample))
    else:
        rgb = downscale(to_rgb(image), max_side_px, resample)
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return rgb if transpose is None else rgb.transpose(transpose)


def swaps_sides(orientation: int) -> bool:
    """EXIF orientations 5-8 rotate by a quarter turn: the upright image's width is the stored height."""
    return orientation in (5, 6, 7, 8)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: as stored); corrupt EXIF keeps the pixels as stored rather than refuse."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - any EXIF parse failure
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE_FOR_ORIENTATION else 1


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        image = _to_eight_bit(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _flatten_on_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _flatten_on_white(image: Image.Image) -> Image.Image:
    """Alpha-composite onto opaque white, making one RGB copy (plus one RGBA copy unless already RGBA)."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    background = Image.new("RGB", image.size, WHITE[:3])
    background.paste(rgba, mask=rgba)  # an RGBA mask is its alpha band, no copy
    return background


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey to 8-bit: 16-bit by its full range, others stretched from their own extremes."""
    if image.mode in _SIXTEEN_BIT_MODES:
        low, high = 0.0, 65535.0
        image = image.convert("I")
    else:
        extrema = image.getextrema()
        low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]  # one band: (min, max)
        if low >= 0 and high <= 255:
            low, high = 0.0, 255.0
    scale = 255.0 / (high - low) if high > low else 1.0
    return image.point(lambda value: value * scale - low * scale).convert("L")


def fit_within(size: tuple[int, int], max_side_px: int) -> tuple[int, int]:
    """`size` scaled down (aspect kept, never below 1 px) so the longer side is at most `max_side_px`."""
    width, height = size
    longest = max(width, height)
    if longest <= max_side_px:
        return size
    scale = max_side_px / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def effective_max_side(max_side_px: int) -> int:
    """0 means "never downscale", except below the JPEG format's own limit."""
    return min(max_side_px, JPEG_MAX_SIDE_PX) if max_side_px > 0 else JPEG_MAX_SIDE_PX


def downscale(
    image: Image.Image, max_side_px: int, resample: Image.Resampling = Image.Resampling.LANCZOS
) -> Image.Image:
    """`reducing_gap=3` first shrinks by a whole factor with `reduce()` (a cheap box average) when the image
    is at least 3x too large, then `resample` covers the rest (decode_cost counts that intermediate)."""
    size = fit_within(image.size, effective_max_side(max_side_px))
    if size == image.size:
        return image
    return image.resize(size, resample, reducing_gap=3.0)


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
