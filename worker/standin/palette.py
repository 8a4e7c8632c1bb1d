"""The stand-in's answer key: one colour per category, so a test can make an image with a known verdict.

Colours are at least ~127 apart in RGB so JPEG re-compression and downscaling of a solid fill never move an
image to another category. White and black are deliberately absent: blank images land on NA (grey), Safe.
"""

from __future__ import annotations

import io
import math

from PIL import Image

RGB = tuple[int, int, int]

PALETTE: dict[str, RGB] = {
    "O1": (255, 0, 0),  # red
    "O2": (0, 255, 0),  # green
    "O3": (0, 0, 255),  # blue
    "O4": (255, 255, 0),  # yellow
    "O5": (255, 0, 255),  # magenta
    "O6": (0, 255, 255),  # cyan
    "O7": (255, 128, 0),  # orange
    "O8": (128, 0, 255),  # violet
    "O9": (0, 128, 255),  # azure
    "NA": (128, 128, 128),  # mid-grey
}


def nearest_code(colour: tuple[float, float, float]) -> str:
    """The category code whose palette colour is closest (Euclidean RGB) to `colour`."""
    return min(PALETTE, key=lambda code: math.dist(PALETTE[code], colour))


def make_image(code: str, size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> bytes:
    """A solid image of `code`'s colour in `fmt` (any Pillow format that takes RGB): its verdict is known."""
    image = Image.new("RGB", size, PALETTE[code.upper()])
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
