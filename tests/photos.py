"""Textured test photos for perceptual matching: solid palette images have PDQ quality 0 and never match by PDQ."""

from __future__ import annotations

from io import BytesIO

from PIL import Image, ImageDraw


def photo(size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    """Overlapping ellipses and rectangles: a hash with quality 100; another `seed` is another picture."""
    image = Image.new("RGB", size, (30 + 40 * seed % 200, 90, 160))
    draw = ImageDraw.Draw(image)
    for step in range(12):
        k = step + 7 * seed
        x, y = 37 * k % size[0], 53 * k % size[1]
        draw.ellipse((x, y, x + 120, y + 90), fill=(20 * k % 256, (255 - 15 * k) % 256, (90 + 10 * k) % 256))
        draw.rectangle((y, x // 2, y + 60, x // 2 + 40), fill=((255 - 20 * k) % 256, 10 * k % 256, 200))
    return image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def reencoded_and_resized(image: Image.Image, quality: int = 60, scale: float = 0.9) -> bytes:
    """The same photo as a re-upload: another JPEG quality, 10% smaller."""
    size = (round(image.width * scale), round(image.height * scale))
    return jpeg(image.resize(size, Image.Resampling.BICUBIC), quality)


def near_miss(image: Image.Image) -> Image.Image:
    """The same photo with a corner (1/36 of it) painted over: just beyond 31 PDQ bits (36; tests assert it)."""
    edited = image.copy()
    ImageDraw.Draw(edited).rectangle((0, 0, image.width // 6, image.height // 6), fill=(250, 250, 250))
    return edited
