"""PDQ, Meta's 256-bit perceptual image hash (facebook/ThreatExchange `pdq/`), in numpy.

Why our own: `pdqhash` (the C++ binding on PyPI) imports only with numpy < 2, and the reference Python port
(`pdqhashing`) loops per pixel (seconds per image). This follows the reference algorithm step by step:
luminance (Rec. 601 weights), two passes of Jarosz box filters (a tent filter) with a window of
ceil(side / 128), decimation to 64x64 by sampling the filtered image at the centre of each cell, the
(1..16)x(1..16) DCT coefficients, one bit per coefficient above the median; quality from the sum of
quantised gradients of the 64x64 image. Like the reference tool, images larger than 512 px are first
shrunk to 512 on the longer side (which also bounds the cost). `tests/unit/test_pdq.py` checks the output
against ThreatExchange's published vectors, within the reference's own tolerance.

Bit order is the reference's: coefficient (i, j) is bit i*16+j, and the hex string is the 256-bit integer
big-endian (the reference prints its 16-bit words from the last to the first), so `int(hex, 16) >> k & 1`
is bit k.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image

PDQ_MAX_SIDE_PX = 512
"""The reference tool's `thumbnail((512, 512))` before hashing."""
_PASSES = 2
_WINDOW_DIVISOR = 128
_CELLS = 64
_COEFFICIENTS = 16

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PdqHash:
    hex: str
    """64 hex characters."""
    quality: int
    """0..100; below ~50 the image is too flat (blank, tiny, blurred) for a near match to mean anything."""


def pdq_hash(image: Image.Image) -> PdqHash:
    """The PDQ hash of an RGB (or L) image; the caller's image is not modified."""
    luma = _luminance(_bounded(image))
    cells = _filter_and_decimate(luma)
    quality = _quality(cells)
    coefficients = _dct_matrix() @ cells @ _dct_matrix().T
    return PdqHash(hex=_bits_hex(coefficients), quality=quality)


def hamming(first: str, second: str) -> int:
    """Bits that differ between two PDQ hex strings."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


def _bounded(image: Image.Image) -> Image.Image:
    if max(image.size) <= PDQ_MAX_SIDE_PX:
        return image
    scale = PDQ_MAX_SIDE_PX / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)  # cheaper than thumbnail's bicubic; 0-2 bits apart


def _luminance(image: Image.Image) -> Floats:
    rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.float64)
    luma: Floats = rgb @ np.array([0.299, 0.587, 0.114])
    return luma


def _filter_and_decimate(luma: Floats) -> Floats:
    """The reference's Jarosz passes then decimation, as two matrix products.

    Row passes act on the right and column passes on the left, so they commute: the 64x64 result is
    `C @ luma @ R.T`, where C (64 x rows) is "the box filter twice, then keep the 64 sampled rows", and R the
    same for columns. Only depends on the sizes (cached), and BLAS makes it about a millisecond."""
    rows, cols = luma.shape
    result: Floats = _sampled_tent(rows) @ luma @ _sampled_tent(cols).T
    return result


@lru_cache(maxsize=256)
def _sampled_tent(length: int) -> Floats:
    box = _box_matrix(length, -(-length // _WINDOW_DIVISOR))
    tent = np.linalg.matrix_power(box, _PASSES)
    centres = ((np.arange(_CELLS) + 0.5) * length / _CELLS).astype(np.intp)
    sampled: Floats = tent[centres]
    sampled.setflags(write=False)
    return sampled


def _box_matrix(length: int, window: int) -> Floats:
    """The reference's `box1DFloat` as a matrix: output o is the mean over [o - (window - half), o + half - 1],
    clipped at the edges, with half = (window + 2) // 2."""
    half = (window + 2) // 2
    positions = np.arange(length)
    low = np.maximum(positions - (window - half), 0).reshape(-1, 1)
    high = np.minimum(positions + half, length).reshape(-1, 1)
    inside = (positions >= low) & (positions < high)
    matrix: Floats = inside / (high - low)
    return matrix


def _quality(cells: Floats) -> int:
    vertical = np.abs(np.trunc((cells[:-1, :] - cells[1:, :]) * 100 / 255)).sum()
    horizontal = np.abs(np.trunc((cells[:, :-1] - cells[:, 1:]) * 100 / 255)).sum()
    return min(int((vertical + horizontal) / 90), 100)


@cache
def _dct_matrix() -> Floats:
    """16x64: rows 1..16 of the DCT-II basis (row 0, the mean, carries no structure)."""
    i = np.arange(1, _COEFFICIENTS + 1).reshape(-1, 1)
    j = np.arange(_CELLS).reshape(1, -1)
    matrix: Floats = np.sqrt(2.0 / _CELLS) * np.cos((np.pi / 2 / _CELLS) * i * (2 * j + 1))
    return matrix


def _bits_hex(coefficients: Floats) -> str:
    flat = coefficients.reshape(-1)
    median = np.partition(flat, flat.size // 2 - 1)[flat.size // 2 - 1]  # Torben's: the lower median
    value = 0
    for k in np.flatnonzero(flat > median):
        value |= 1 << int(k)
    return f"{value:064x}"
