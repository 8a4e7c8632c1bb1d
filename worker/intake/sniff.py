"""Name what some bytes are when Pillow's allowlisted decoders refused them, so the verdict says why.

"This is an SVG" (IMAGE_FORMAT_UNSUPPORTED) tells a client to convert; "this is not an image"
(IMAGE_NOT_AN_IMAGE) tells it the upload is wrong. Only headers are inspected: this module must never
decode anything, and never hand the bytes to a non-allowlisted Pillow plugin (EPS runs Ghostscript).
"""

from __future__ import annotations

import codecs

from PIL import Image

from worker.errors import ErrorCode, ModerationFailed

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "PSD"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"gimp xcf", "XCF"),
)
_FTYP_BRANDS: dict[bytes, str] = {
    b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF",
    b"avif": "AVIF", b"avis": "AVIF",
}
_TEXT_CONTROLS = frozenset(range(32)) - {9, 10, 12, 13}


def explain_unidentified(data: bytes) -> ModerationFailed:
    """The error for bytes none of the allowed decoders accepted."""
    kind = foreign_format(data)
    if kind is not None:
        accepted = ", ".join(ALLOWED_FORMATS)
        message = f"{kind} is not an accepted image format (accepted: {accepted})"
        return ModerationFailed(ErrorCode.IMAGE_FORMAT_UNSUPPORTED, message)
    if looks_like_text(data):
        return ModerationFailed(ErrorCode.IMAGE_NOT_AN_IMAGE, "the data is text, not an image")
    return ModerationFailed(ErrorCode.IMAGE_NOT_AN_IMAGE, "the data is not a recognisable image")


def foreign_format(data: bytes) -> str | None:
    """The name of a recognisable format outside the allowlist (SVG, PDF, HEIC, PSD, ICO ...), else None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "ISO media (video or HEIF)")
    return _markup_format(data[:4096]) or _pillow_format(data[:16])


def looks_like_text(data: bytes) -> bool:
    """UTF-8 (a cut multi-byte character at the end allowed) without control characters."""
    head = data[:4096]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not any(byte in _TEXT_CONTROLS for byte in head)


def _markup_format(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not text.startswith(b"<"):
        return None
    if b"<svg" in text:
        return "SVG"
    if b"<html" in text or text.startswith(b"<!doctype html"):
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    return None


def _pillow_format(prefix: bytes) -> str | None:
    """Ask Pillow's header checks (`accept`, pure prefix tests that decode nothing) of the other plugins."""
    Image.init()
    for name in Image.ID:
        _factory, accept = Image.OPEN[name]
        if name in ALLOWED_FORMATS or accept is None:
            continue
        try:
            if accept(prefix):
                return name
        except Exception:  # noqa: BLE001, S112 - a plugin's header check failing means "not this format"
            continue
    return None
