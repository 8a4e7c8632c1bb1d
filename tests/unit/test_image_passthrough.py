"""The lean image path (issue 15 item 3): conforming images go out as their exact bytes, others are rendered
with the configured filter and quality, and hostile input fails with the same codes as before."""

from __future__ import annotations

import random
import struct
import zlib
from io import BytesIO

import pytest
from PIL import Image

from worker import composition
from worker.errors import ErrorCode, ModerationFailed
from worker.intake import RenderOptions
from worker.intake.conform import conforming_mime
from worker.intake.decode_budget import DecodeBudget
from worker.intake.images import PreparedImage, prepare_image
from worker.intake.pixels import encode_jpeg
from worker.settings import Settings

LEAN = RenderOptions(resize_filter="box", passthrough=True)


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """Noise with a red left half and a blue right half: resampling and orientation mistakes are visible."""
    image = Image.effect_noise(size, 40).convert(mode)
    if mode == "RGB":
        image.paste((220, 20, 20), (0, 0, size[0] // 2, size[1] // 4))
        image.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1] // 4))
    return image


def prepare(data: bytes, options: RenderOptions = LEAN, *, max_side_px: int = 1024,
            budget: DecodeBudget | None = None) -> PreparedImage:
    return prepare_image(data, source="t", max_pixels=50_000_000, max_side_px=max_side_px, options=options,
                         budget=budget)


def code_of(data: bytes, **kwargs: object) -> ErrorCode:
    with pytest.raises(ModerationFailed) as caught:
        prepare(data, **kwargs)  # type: ignore[arg-type]
    return caught.value.code


@pytest.mark.parametrize(
    ("image_format", "mode", "mime"),
    [("JPEG", "RGB", "image/jpeg"), ("JPEG", "L", "image/jpeg"), ("PNG", "RGB", "image/png"),
     ("PNG", "L", "image/png"), ("WEBP", "RGB", "image/webp")],
)
def test_a_conforming_image_is_sent_as_its_exact_original_bytes(image_format: str, mode: str, mime: str) -> None:
    data = encode(photo(mode=mode), image_format)
    prepared = prepare(data)
    assert prepared.payload == data
    assert prepared.mime == mime
    assert (prepared.info.width, prepared.info.height, prepared.info.format) == (96, 64, image_format)


def test_without_passthrough_a_conforming_image_is_re_encoded_as_before() -> None:
    data = encode(photo(), "PNG")
    prepared = prepare(data, RenderOptions())
    assert prepared.payload != data and prepared.mime == "image/jpeg"


@pytest.mark.parametrize("resize_filter", ["box", "nearest", "bilinear", "lanczos"])
def test_a_larger_image_is_resized_with_the_configured_filter_and_quality(resize_filter: str) -> None:
    original = photo((200, 100))
    options = RenderOptions(resize_filter=resize_filter, jpeg_quality=70, passthrough=True)
    prepared = prepare(encode(original, "PNG"), options, max_side_px=100)
    expected = encode_jpeg(original.resize((100, 50), options.resample, reducing_gap=3.0), 70)
    assert prepared.payload == expected
    assert prepared.mime == "image/jpeg"
    assert (prepared.info.width, prepared.info.height) == (200, 100)  # the original's size is recorded


def test_the_filters_differ_so_the_setting_matters() -> None:
    data = encode(photo((200, 100)), "PNG")
    payloads = {f: prepare(data, RenderOptions(resize_filter=f), max_side_px=100).payload for f in ("box", "nearest")}
    assert payloads["box"] != payloads["nearest"]


def test_an_exif_rotated_image_is_still_oriented() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    data = encode(photo((60, 40)), "JPEG", exif=exif.tobytes())
    prepared = prepare(data)
    assert prepared.payload != data and prepared.mime == "image/jpeg"
    image = Image.open(BytesIO(prepared.payload))
    assert image.size == (40, 60)
    assert (prepared.info.width, prepared.info.height) == (40, 60)
    right = image.getpixel((36, 5))  # the red top-left corner is now at the top right
    assert isinstance(right, tuple) and right[0] > 150 and right[2] < 100


@pytest.mark.parametrize(
    "image",
    [photo(mode="RGBA"), photo(mode="P"), photo(mode="CMYK"), Image.new("I;16", (40, 30), 300)],
    ids=["rgba", "palette", "cmyk", "16-bit"],
)
def test_modes_the_model_does_not_take_as_they_are_are_rendered(image: Image.Image) -> None:
    image_format = "JPEG" if image.mode == "CMYK" else "PNG"
    prepared = prepare(encode(image, image_format))
    assert prepared.mime == "image/jpeg"
    assert Image.open(BytesIO(prepared.payload)).mode == "RGB"


def test_formats_outside_the_passthrough_set_are_rendered() -> None:
    for image_format in ("GIF", "BMP", "TIFF"):
        assert prepare(encode(photo(), image_format)).mime == "image/jpeg"


def test_an_image_larger_than_the_max_side_is_never_passed_through() -> None:
    data = encode(photo((300, 200)), "JPEG")
    prepared = prepare(data, max_side_px=150)
    assert Image.open(BytesIO(prepared.payload)).size == (150, 100)


@pytest.mark.parametrize(
    ("image_format", "code"),
    [("JPEG", ErrorCode.IMAGE_TRUNCATED), ("PNG", ErrorCode.IMAGE_TRUNCATED), ("WEBP", ErrorCode.IMAGE_NOT_AN_IMAGE)],
)
def test_a_truncated_conforming_image_fails_as_without_passthrough(image_format: str, code: ErrorCode) -> None:
    """WebP's RIFF header states the length, so a cut WebP is refused at open, with or without passthrough."""
    data = encode(Image.effect_noise((128, 128), 64).convert("RGB"), image_format)[:-1000]
    assert code_of(data) == code
    assert code_of(data, options=RenderOptions()) == code


def test_a_conforming_image_still_reserves_decode_memory() -> None:
    data = encode(photo((400, 300)), "PNG")
    assert code_of(data, budget=DecodeBudget(total_bytes=1000, wait_s=0.1)) == ErrorCode.IMAGE_DECOMPRESSION_BOMB


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_mutated_conforming_images_fail_only_with_image_codes(image_format: str) -> None:
    rng = random.Random(image_format)
    original = encode(Image.effect_noise((96, 64), 50).convert("RGB"), image_format)
    for _ in range(100):
        data = bytearray(original)
        for _flip in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            prepared = prepare(bytes(data))
        except ModerationFailed as exc:
            assert exc.code.startswith("image_")
        else:
            assert prepared.payload


def test_the_settings_defaults_turn_the_lean_path_on() -> None:
    options = composition.render_options(Settings())
    assert options == RenderOptions(resize_filter="box", jpeg_quality=90, passthrough=True, draft_undershoot=0.1)


@pytest.mark.parametrize(
    ("size", "undershoot", "sent"),
    [((4032, 3024), 0.1, (1008, 756)), ((4032, 3024), 0.0, (1024, 768)), ((2000, 1000), 0.1, (1000, 500)),
     ((1280, 800), 0.1, (1024, 640))],
)
def test_a_large_jpeg_is_decoded_at_the_dct_scale_that_needs_no_resize(
    size: tuple[int, int], undershoot: float, sent: tuple[int, int]
) -> None:
    """1/4 of 4032 is 1008, within 10 % below 1024: no resize; 1/2 of 1280 (640) is too far below."""
    options = RenderOptions(resize_filter="box", passthrough=True, draft_undershoot=undershoot)
    prepared = prepare(encode(Image.new("RGB", size, (200, 30, 30)), "JPEG"), options)
    assert Image.open(BytesIO(prepared.payload)).size == sent
    assert (prepared.info.width, prepared.info.height) == size


def test_a_png_whose_exif_orientation_comes_after_its_pixels_is_still_oriented() -> None:
    """The eXIf chunk may follow IDAT: Pillow sees it only after decoding, and so must the passthrough."""
    exif = Image.Exif()
    exif[0x0112] = 6
    tiff = exif.tobytes()
    tiff = tiff[6:] if tiff.startswith(b"Exif\x00\x00") else tiff
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    plain = encode(photo((60, 40)), "PNG")
    data = plain[:-12] + chunk + plain[-12:]  # before IEND
    prepared = prepare(data)
    assert prepared.mime == "image/jpeg"
    assert Image.open(BytesIO(prepared.payload)).size == (40, 60)


def test_the_passthrough_check_decodes_nothing_before_the_memory_checks() -> None:
    """A PNG within the size limit but above the per-image decode memory fails before any pixel is decoded."""
    data = encode(Image.new("L", (1000, 1000), 128), "PNG")
    with pytest.raises(ModerationFailed) as caught:
        prepare_image(data, source=None, max_pixels=10**8, max_side_px=1024, max_decode_bytes=1000, options=LEAN)
    assert caught.value.code == ErrorCode.IMAGE_DECOMPRESSION_BOMB
    image = Image.open(BytesIO(data))
    assert conforming_mime(image, 1024) == "image/png"
    assert image.tile  # Pillow empties `tile` once it has decoded the image
