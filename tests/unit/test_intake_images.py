"""prepare_image: every allowed format round-trips, pixels are normalised, every bad input gets its code."""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from io import BytesIO

import pytest
from PIL import Image

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.images import PreparedImage, prepare_image
from worker.intake.sniff import ALLOWED_FORMATS

MAX_PIXELS = 50_000_000
FUZZ_ROUNDS = 150


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def prepare(
    data: bytes, *, max_side_px: int = 1024, max_pixels: int = MAX_PIXELS, max_bytes: int | None = None
) -> PreparedImage:
    return prepare_image(data, source="test", max_pixels=max_pixels, max_side_px=max_side_px, max_bytes=max_bytes)


def decoded(prepared: PreparedImage) -> Image.Image:
    image = Image.open(BytesIO(prepared.payload))
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    return image


def failure_code(data: bytes, *, max_pixels: int = MAX_PIXELS, max_bytes: int | None = None) -> ErrorCode:
    with pytest.raises(ModerationFailed) as caught:
        prepare(data, max_pixels=max_pixels, max_bytes=max_bytes)
    return caught.value.code


def sample(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A left-red, right-blue image, so orientation and cropping mistakes are visible."""
    image = Image.new("RGB", size, (220, 20, 20))
    image.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1]))
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares `width`x`height` but which carries almost no data (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("image_format", ALLOWED_FORMATS)
def test_every_allowed_format_round_trips(image_format: str) -> None:
    data = encode(sample(), image_format)
    prepared = prepare(data)
    assert prepared.mime == "image/jpeg"
    assert prepared.info.format == image_format
    assert (prepared.info.width, prepared.info.height) == (64, 48)
    assert prepared.info.sha256 == hashlib.sha256(data).hexdigest()
    assert prepared.info.source == "test"
    image = decoded(prepared)
    assert image.size == (64, 48)
    left, right = image.getpixel((5, 24)), image.getpixel((58, 24))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] > 150 and right[2] > 150


def test_exif_orientation_is_applied_and_reported() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    prepared = prepare(encode(sample((60, 40)), "JPEG", exif=exif.tobytes()))
    assert (prepared.info.width, prepared.info.height) == (40, 60)
    image = decoded(prepared)
    assert image.size == (40, 60)
    top = image.getpixel((20, 5))
    assert isinstance(top, tuple) and top[0] > 150  # the red left half is now on top


@pytest.mark.parametrize(
    ("mode", "transparent", "image_format"),
    [("RGBA", (0, 0, 0, 0), "PNG"), ("LA", (0, 0), "PNG"), ("RGBA", (0, 0, 0, 0), "WEBP")],
)
def test_transparency_is_composited_onto_white(mode: str, transparent: tuple[int, ...], image_format: str) -> None:
    image = Image.new(mode, (16, 16), transparent)
    pixel = decoded(prepare(encode(image, image_format, lossless=True))).getpixel((8, 8))
    assert isinstance(pixel, tuple) and min(pixel) >= 250


def test_palette_transparency_is_composited_onto_white() -> None:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0] * 256)
    pixel = decoded(prepare(encode(image, "GIF", transparency=0))).getpixel((8, 8))
    assert isinstance(pixel, tuple) and min(pixel) >= 250


@pytest.mark.parametrize(
    ("image", "image_format", "grey"),
    [
        (Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", 255),
        (Image.new("L", (8, 8), 128), "PNG", 128),
        (Image.new("I;16", (8, 8), 32768), "PNG", 128),
        (Image.new("1", (8, 8), 1), "BMP", 255),
    ],
)
def test_other_modes_become_rgb(image: Image.Image, image_format: str, grey: int) -> None:
    pixel = decoded(prepare(encode(image, image_format))).getpixel((4, 4))
    assert isinstance(pixel, tuple) and all(abs(channel - grey) <= 3 for channel in pixel)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_downscale_caps_the_longer_side(image_format: str) -> None:
    prepared = prepare(encode(sample((1200, 480)), image_format), max_side_px=300)
    assert decoded(prepared).size == (300, 120)
    assert (prepared.info.width, prepared.info.height) == (1200, 480)


def test_max_side_zero_never_downscales() -> None:
    assert decoded(prepare(encode(sample((1200, 480)), "PNG"), max_side_px=0)).size == (1200, 480)


def test_small_images_are_not_upscaled() -> None:
    assert decoded(prepare(encode(sample((30, 20)), "PNG"), max_side_px=300)).size == (30, 20)


@pytest.mark.parametrize("image_format", ["GIF", "WEBP", "PNG"])
def test_animation_takes_the_first_frame(image_format: str) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    data = encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3
    pixel = decoded(prepare(data)).getpixel((16, 16))
    assert isinstance(pixel, tuple) and pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", ErrorCode.IMAGE_EMPTY),
        (random.Random(7).randbytes(4096), ErrorCode.IMAGE_NOT_AN_IMAGE),
        (b"\x00" * 100, ErrorCode.IMAGE_NOT_AN_IMAGE),
        (b"just some words, not a picture\n" * 10, ErrorCode.IMAGE_NOT_AN_IMAGE),
        (b'{"image": "nope"}', ErrorCode.IMAGE_NOT_AN_IMAGE),
        (SVG, ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'></svg>", ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b"<!DOCTYPE html><html><body><img src=x></body></html>", ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b'<?xml version="1.0"?><feed/>', ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b"\xc5\xd0\xd3\xc6" + b"\x00" * 60, ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b"8BPS\x00\x01" + b"\x00" * 60, ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (encode(Image.new("RGB", (16, 16)), "ICO"), ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (encode(Image.new("RGB", (16, 16)), "PPM"), ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        (encode(Image.new("RGB", (16, 16)), "PCX"), ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
    ],
    ids=[
        "empty", "random", "zeros", "text", "json", "svg", "svg-bom", "html", "xml", "eps", "eps-binary",
        "pdf", "psd", "heic", "ico", "ppm", "pcx",
    ],
)
def test_bad_inputs_get_their_code(data: bytes, code: ErrorCode) -> None:
    assert failure_code(data) == code


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP", "TIFF"])
def test_truncated_data_is_reported_as_truncated(image_format: str) -> None:
    data = encode(Image.effect_noise((128, 128), 64).convert("RGB"), image_format)
    assert failure_code(data[: len(data) // 2]) == ErrorCode.IMAGE_TRUNCATED


def test_a_header_declaring_huge_dimensions_is_a_bomb() -> None:
    assert failure_code(png_header_only(100_000, 100_000)) == ErrorCode.IMAGE_DECOMPRESSION_BOMB


def test_a_header_just_above_pillows_warning_threshold_is_a_bomb() -> None:
    assert failure_code(png_header_only(9_500, 9_500), max_pixels=89_478_485) == ErrorCode.IMAGE_DECOMPRESSION_BOMB


def test_max_pixels_is_checked_before_decoding() -> None:
    assert failure_code(encode(sample((200, 200)), "PNG"), max_pixels=39_999) == ErrorCode.IMAGE_DECOMPRESSION_BOMB
    assert decoded(prepare(encode(sample((200, 200)), "PNG"), max_pixels=40_000)).size == (200, 200)


def test_max_bytes_is_checked_for_inline_data() -> None:
    data = encode(sample(), "PNG")
    assert failure_code(data, max_bytes=len(data) - 1) == ErrorCode.IMAGE_TOO_LARGE
    assert prepare(data, max_bytes=len(data)).info.format == "PNG"


@pytest.mark.parametrize("image_format", ALLOWED_FORMATS)
def test_mutated_images_never_escape_as_other_exceptions(image_format: str) -> None:
    """Hostile input: random byte flips and cuts either decode or fail with an IMAGE_* code, nothing else."""
    rng = random.Random(image_format)
    original = encode(Image.effect_noise((96, 64), 50).convert("RGB"), image_format)
    for _ in range(FUZZ_ROUNDS):
        data = bytearray(original)
        for _flip in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        try:
            prepare(bytes(data), max_pixels=10_000_000, max_side_px=64)
        except ModerationFailed as exc:
            assert exc.code.value.startswith("image_")
