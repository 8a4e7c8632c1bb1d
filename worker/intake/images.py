"""Validate untrusted image bytes and turn them into the JPEG the model is sent.

Order matters for safety: the byte size is checked before Pillow sees the data, the format is chosen from an
allowlist by content (never EPS, which runs Ghostscript), and the pixel count declared in the header is
checked before anything is decoded; so is the memory the decode will take (`decode_cost`), against a per-image
limit and the process-wide `DecodeBudget`, which the decode holds until the JPEG is encoded. Every failure,
however hostile the input, is a `ModerationFailed` with an IMAGE_* code; nothing here may crash, hang on
purpose-built input, or change process-wide Pillow state (`MAX_IMAGE_PIXELS`, `LOAD_TRUNCATED_IMAGES`, warning
filters): many threads decode at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageFile, UnidentifiedImageError

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.conform import conforming_mime, validation_size
from worker.intake.decode_budget import DecodeBudget
from worker.intake.decode_cost import estimate_decode_bytes
from worker.intake.limits import check_byte_size
from worker.intake.pixels import (
    DEFAULT_OPTIONS,
    RenderOptions,
    encode_jpeg,
    exif_orientation,
    fit_within,
    render,
    swaps_sides,
)
from worker.intake.sniff import ALLOWED_FORMATS, explain_unidentified
from worker.matching.pdq import PdqHash, pdq_hash
from worker.models import ImageInfo

JPEG_FAMILY = frozenset({"JPEG", "MPO"})
"""Pillow reports a JPEG carrying a multi-picture extension (common from phones) as MPO."""


@dataclass(frozen=True)
class PreparedImage:
    payload: bytes
    """The image as sent to the model: an RGB JPEG, possibly downscaled, or the original bytes when they
    conform (conform.py) and `RenderOptions.passthrough` is on."""
    mime: str
    info: ImageInfo
    """What the verdict records: hash of the original bytes, oriented original size, detected format."""
    md5: str | None = None
    """MD5 of the original bytes, for hash banks that list MD5s (issue 12); never recorded on the verdict."""


def prepare_image(
    data: bytes,
    *,
    source: str | None,
    max_pixels: int,
    max_side_px: int,
    max_bytes: int | None = None,
    max_decode_bytes: int | None = None,
    budget: DecodeBudget | None = None,
    options: RenderOptions = DEFAULT_OPTIONS,
) -> PreparedImage:
    """Validate and normalise one image (first frame if animated); ModerationFailed(IMAGE_*) if unusable.

    Without `budget` decodes are not limited process-wide (tests, one-off tools); the worker always has one.
    Every limit applies before any decode, passthrough or not; a conforming image is still decoded (cheaply)
    to validate it, only its render and re-encode are skipped."""
    check_byte_size(data, max_bytes)
    with _open(data) as image:
        image_format = image.format or "unknown"
        width, height = _check_pixels(image.size, max_pixels)
        mime = _passthrough_mime(image, max_side_px, options)
        _draft(image, image_format, max_side_px, validate_only=mime is not None,
               undershoot=options.draft_undershoot)
        needed = _check_decode_bytes(image, max_decode_bytes)
        with budget.reserve(needed) if budget is not None else nullcontext():
            _decode(image, image_format)
            mime = _still_upright(image, mime)
            if mime is not None:  # sent as is: the PDQ hash of the pixels decoded to validate it
                payload, rotated, pdq = data, False, _pdq_of(image)
            else:
                payload, rotated, pdq = _render(image, max_side_px, options)
    if rotated:
        width, height = height, width
    digest = hashlib.sha256(data).hexdigest()
    info = ImageInfo(
        sha256=digest, width=width, height=height, format=image_format, source=source,
        pdq=pdq.hex, pdq_quality=pdq.quality,
    )
    return PreparedImage(payload=payload, mime=mime or "image/jpeg", info=info, md5=_md5(data))


def _md5(data: bytes) -> str:
    """Not for security: banks exchanged between platforms list some content by MD5."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _pdq_of(image: Image.Image) -> PdqHash:
    with _pillow_errors(ErrorCode.IMAGE_NOT_AN_IMAGE, f"the {image.mode} image could not be converted"):
        return pdq_hash(image)


def _open(data: bytes) -> ImageFile.ImageFile:
    """Identify by content among the allowed formats only; reads the header, decodes no pixels."""
    try:
        return Image.open(BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        raise explain_unidentified(data) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(str(exc)) from exc
    except Exception as exc:  # any parse failure; see _pillow_errors
        raise _header_error(exc) from exc


def _check_pixels(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The header's size, refused before decoding if it would take more than `max_pixels` pixels of memory."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ModerationFailed(ErrorCode.IMAGE_NOT_AN_IMAGE, f"the image declares a size of {width}x{height}")
    if width * height > max_pixels:
        raise _bomb(f"{width}x{height} is {width * height} pixels, more than the limit of {max_pixels}")
    return width, height


def _passthrough_mime(image: Image.Image, max_side_px: int, options: RenderOptions) -> str | None:
    """Header checks only; corrupt EXIF or odd headers just mean "render it" (never a failure here)."""
    if not options.passthrough:
        return None
    try:
        return conforming_mime(image, max_side_px)
    except Exception:  # noqa: BLE001 - the full path reports the problem with its proper code
        return None


def _still_upright(image: Image.Image, mime: str | None) -> str | None:
    """A PNG may carry its EXIF (eXIf) after the pixel data, seen only once decoded: an orientation found
    there means render after all (the full-size decode is at hand; a JPEG's EXIF always precedes its pixels)."""
    if mime is None or image.format in JPEG_FAMILY or exif_orientation(image) == 1:
        return mime
    return None


def _draft(
    image: ImageFile.ImageFile, image_format: str, max_side_px: int, *, validate_only: bool, undershoot: float
) -> None:
    """A JPEG to be downscaled is decoded at reduced scale (1/2 to 1/8), far cheaper; one sent as is
    (`validate_only`) at 1/8, which still reads every byte. Only configures the decoder (and the size the
    estimate sees), decodes nothing."""
    if image_format in JPEG_FAMILY and (max_side_px > 0 or validate_only):
        target = validation_size(image.size) if validate_only else draft_target(image.size, max_side_px, undershoot)
        if target != image.size:
            with _pillow_errors(ErrorCode.IMAGE_TRUNCATED, f"the {image_format} header is corrupt"):
                image.draft(image.mode, target)


def draft_target(size: tuple[int, int], max_side_px: int, undershoot: float) -> tuple[int, int]:
    """The size to ask `Image.draft` for: the smallest DCT scale whose longer side lands in
    [(1 - undershoot) x max side, max side], so no resize is left to do (4032x3024 -> 1008x756 at 1/4);
    else the fitted size, which Pillow meets with the largest scale still at least that big."""
    width, height = size
    for scale in (8, 4, 2):
        longest = -(-max(width, height) // scale)  # Pillow rounds a scaled side up
        if (1 - undershoot) * max_side_px <= longest <= max_side_px:
            return max(1, width // scale), max(1, height // scale)
    return fit_within(size, max_side_px)


def _check_decode_bytes(image: Image.Image, max_decode_bytes: int | None) -> int:
    """The decode's estimated memory, refused before decoding if above the per-image limit."""
    needed = estimate_decode_bytes(image)
    if max_decode_bytes is not None and needed > max_decode_bytes:
        width, height = image.size
        raise _bomb(
            f"decoding the {width}x{height} {image.mode} {image.format} image needs about {needed} bytes of "
            f"memory, more than the per-image limit of {max_decode_bytes}"
        )
    return needed


def _decode(image: ImageFile.ImageFile, image_format: str) -> None:
    """Decode the first frame only (an animation's later frames are never decoded)."""
    with _pillow_errors(ErrorCode.IMAGE_TRUNCATED, f"the {image_format} data is truncated or corrupt"):
        image.load()


def _render(image: Image.Image, max_side_px: int, options: RenderOptions) -> tuple[bytes, bool, PdqHash]:
    """The model's JPEG, whether EXIF orientation swapped width and height, and the PDQ hash of the very
    pixels the model is sent (upright, flattened on white: no second decode, issue 12)."""
    with _pillow_errors(ErrorCode.IMAGE_NOT_AN_IMAGE, f"the {image.mode} image could not be converted"):
        orientation = exif_orientation(image)
        rendered = render(image, max_side_px, orientation, options)
        payload = encode_jpeg(rendered, options.jpeg_quality)
        pdq = pdq_hash(rendered)
    return payload, swaps_sides(orientation), pdq


@contextmanager
def _pillow_errors(code: ErrorCode, doing: str) -> Iterator[None]:
    """Pillow's plugins raise a zoo of exceptions on hostile data (OSError, SyntaxError, ValueError,
    struct.error, IndexError, warnings turned into errors ...); each becomes ModerationFailed(`code`)."""
    try:
        yield
    except ModerationFailed:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(str(exc)) from exc
    except Exception as exc:
        raise ModerationFailed(code, f"{doing}: {_describe(exc)}") from exc


def _header_error(exc: Exception) -> ModerationFailed:
    """A recognised header that fails to parse: truncated if it ran out of bytes, else not an image."""
    truncated = isinstance(exc, EOFError) or "truncated" in str(exc).lower()
    code = ErrorCode.IMAGE_TRUNCATED if truncated else ErrorCode.IMAGE_NOT_AN_IMAGE
    return ModerationFailed(code, f"the image header could not be read: {_describe(exc)}")


def _bomb(detail: str) -> ModerationFailed:
    return ModerationFailed(ErrorCode.IMAGE_DECOMPRESSION_BOMB, f"the image is too large to decode: {detail}")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
