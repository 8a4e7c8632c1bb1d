"""PDQ against ThreatExchange's published vectors, and on the pixels intake prepares for the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.photos import jpeg, photo, reencoded_and_resized
from worker.intake import prepare_image
from worker.matching.pdq import hamming, pdq_hash

VECTORS = Path(__file__).parent / "data" / "pdq"
REFERENCE_TOLERANCE = 16
"""pdq/python/pdqhashing/tests/pdq_test.py in facebook/ThreatExchange: `hamming_tolerance = 16`."""
EXPECTED = {
    "small.jpg": "0007001f003f003f007f00ff00ff00ff01ff01ff01ff03ff03ff03ff03ff03ff",
    "wee.jpg": "6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d",
    "q0003.jpg": "54a977c221d14c1c43ba5e6e21d4a13989a3553f1462611cbb85fda7be83b677",
    "q0004.jpg": "992d44af36d69e6ca6b812585928bac11def254ef5398c6d07466c9abcc65b92",
    "q0122.jpg": "cfb2009ddd21c6dab0046a7745b5984757a8a4535b3377aea2591d32b33ff940",
    "q0291.jpg": "a0fe94f1e5cc1cc8dd855948498dc9243f7ca27336f036d7f212b74bc103c9a7",
    "q0746.jpg": "1049d96239e24d4dca2c55512b8bdb77425f4dbcf575a0a95555aaab5554aaaa",
    "q1050.jpg": "489db672e9190276d452aeab41eba20f02375fe4092d88defdf491a5c55c5f70",
    "q2821.jpg": "b150231ffae4710ffcf4f18bb574b109a576f14bb8543189f8743289f174b109",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_hash_matches_the_reference_vectors(name: str) -> None:
    with Image.open(VECTORS / name) as image:
        found = pdq_hash(image.convert("RGB"))
    assert len(found.hex) == 64
    assert hamming(found.hex, EXPECTED[name]) <= REFERENCE_TOLERANCE


@pytest.mark.parametrize("name", ["q0122.jpg", "q2821.jpg", "wee.jpg"])
def test_textured_vectors_match_bit_for_bit(name: str) -> None:
    # Exactness where the reference's coefficients are far from the median: our numpy follows its arithmetic.
    with Image.open(VECTORS / name) as image:
        assert pdq_hash(image.convert("RGB")).hex == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prepared_images_carry_the_reference_hash(name: str) -> None:
    prepared = prepare_image((VECTORS / name).read_bytes(), source=None, max_pixels=10**8, max_side_px=1024)
    assert prepared.info.pdq is not None and prepared.info.pdq_quality is not None
    assert hamming(prepared.info.pdq, EXPECTED[name]) <= REFERENCE_TOLERANCE


def test_quality_says_whether_the_image_has_structure() -> None:
    flat = pdq_hash(Image.new("RGB", (300, 200), (120, 120, 120)))
    with Image.open(VECTORS / "q2821.jpg") as image:
        textured = pdq_hash(image.convert("RGB"))
    assert flat.quality == 0
    assert textured.quality >= 50


def test_a_reencoded_resized_copy_stays_near_and_another_picture_is_far() -> None:
    original = photo()
    first = prepare_image(jpeg(original, 95), source=None, max_pixels=10**8, max_side_px=672).info
    second = prepare_image(reencoded_and_resized(original), source=None, max_pixels=10**8, max_side_px=672).info
    mirrored = prepare_image(
        jpeg(original.transpose(Image.Transpose.FLIP_TOP_BOTTOM), 95), source=None, max_pixels=10**8,
        max_side_px=672,
    ).info
    assert first.pdq and second.pdq and mirrored.pdq
    assert first.sha256 != second.sha256
    assert hamming(first.pdq, second.pdq) <= 8
    assert hamming(first.pdq, mirrored.pdq) > 31
