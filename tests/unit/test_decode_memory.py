"""Decode memory (issue 8 item 2): the header-only estimate, the per-image limit and the process-wide budget."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from worker.errors import DecodeMemoryBusy, ErrorCode, ModerationFailed
from worker.intake.decode_budget import GIB, DecodeBudget, available_memory_bytes, default_budget_bytes
from worker.intake.decode_cost import estimate_decode_bytes
from worker.intake.images import prepare_image
from worker.settings import load_settings

DEFAULTS = load_settings()


def png_declaring(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG header claiming `width` x `height` (grey by default), with no pixel data: the estimate and the
    limits run before any decoding, so they must refuse it from the header alone."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def estimate(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return estimate_decode_bytes(image)


def encoded(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (90, 120, 30) if mode == "RGB" else 90).save(buf, fmt)
    return buf.getvalue()


def test_a_tall_grey_png_is_costed_by_its_row_pointers() -> None:
    """1x89,000,000 grey: 89 MB of pixels but 712 MB of row pointers; a pixels-only estimate misses 90%."""
    assert estimate(png_declaring(1, 89_000_000)) >= 89_000_000 * 9


def test_rgba_and_animated_webp_cost_more_than_their_pixels() -> None:
    rgba = estimate(png_declaring(9000, 9000, colour_type=6))
    assert rgba >= 2 * 9000 * 9000 * 4  # the frame and its premultiplied copy while shrinking
    buf = io.BytesIO()
    frames = [Image.new("RGB", (64, 64), c) for c in ("black", "white")]
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert estimate(buf.getvalue()) >= 4 * 64 * 64 * 4  # libwebp's canvases + its frame bytes + Pillow's


def test_an_image_over_the_per_image_limit_fails_naming_estimate_and_limit() -> None:
    data = png_declaring(1, 89_000_000)
    with pytest.raises(ModerationFailed) as failed:
        prepare_image(data, source=None, max_pixels=DEFAULTS.max_image_pixels, max_side_px=1024,
                      max_decode_bytes=100_000_000)
    assert failed.value.code is ErrorCode.IMAGE_DECOMPRESSION_BOMB
    assert str(estimate(data)) in failed.value.message and "100000000" in failed.value.message


def test_an_image_bigger_than_the_whole_budget_is_refused_at_once() -> None:
    budget = DecodeBudget(total_bytes=1000, wait_s=60)
    started = time.monotonic()
    with pytest.raises(ModerationFailed) as failed, budget.reserve(1001):
        pass
    assert failed.value.code is ErrorCode.IMAGE_DECOMPRESSION_BOMB and "1000" in failed.value.message
    assert time.monotonic() - started < 5, "refused, not waited for"
    assert budget.reserved_bytes == 0


@pytest.mark.parametrize(("size", "fmt"), [((4000, 3000), "JPEG"), ((8000, 6000), "JPEG"), ((4000, 3000), "PNG")])
def test_ordinary_photos_pass_with_the_defaults_of_a_2_gib_worker(
    size: tuple[int, int], fmt: str, tmp_path: Path
) -> None:
    limit = tmp_path / "memory.max"
    limit.write_text(str(2 * GIB))
    budget = DecodeBudget(default_budget_bytes((limit,)), DEFAULTS.decode_wait_s)
    prepared = prepare_image(encoded(size, fmt), source=None, max_pixels=DEFAULTS.max_image_pixels,
                             max_side_px=DEFAULTS.max_image_side_px, max_decode_bytes=DEFAULTS.max_decode_bytes,
                             budget=budget)
    assert (prepared.info.width, prepared.info.height) == size
    assert budget.reserved_bytes == 0, "released once the JPEG is encoded"


def test_concurrent_decodes_wait_for_each_other_instead_of_exceeding_the_budget() -> None:
    budget = DecodeBudget(total_bytes=100, wait_s=30)
    inside: list[int] = []
    peak: list[int] = []
    lock = threading.Lock()

    def decode() -> None:
        with budget.reserve(60):
            with lock:
                inside.append(1)
                peak.append(len(inside))
            time.sleep(0.2)
            with lock:
                inside.pop()

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(peak) == 4 and max(peak) == 1, "two 60-byte decodes never share a 100-byte budget"
    assert budget.reserved_bytes == 0


def test_small_decodes_share_the_budget() -> None:
    budget = DecodeBudget(total_bytes=100, wait_s=1)
    with budget.reserve(40), budget.reserve(40):
        assert budget.reserved_bytes == 80


def test_a_wait_past_the_deadline_is_a_transient_error_not_a_hang() -> None:
    budget = DecodeBudget(total_bytes=100, wait_s=0.3)
    with budget.reserve(80):
        started = time.monotonic()
        with pytest.raises(DecodeMemoryBusy) as busy, budget.reserve(30):
            pass
        assert time.monotonic() - started >= 0.3
    assert busy.value.retry_after_s == pytest.approx(0.3)
    assert budget.reserved_bytes == 0


def test_a_reservation_is_released_when_the_decode_raises() -> None:
    budget = DecodeBudget(total_bytes=100, wait_s=0.5)
    with pytest.raises(ModerationFailed), budget.reserve(90):
        prepare_image(b"not an image", source=None, max_pixels=10, max_side_px=10)
    with budget.reserve(90):  # would time out if the failed decode had kept its bytes
        assert budget.reserved_bytes == 90
    truncated = encoded((64, 64), "PNG")[:-40]
    with pytest.raises(ModerationFailed):
        prepare_image(truncated, source=None, max_pixels=10**6, max_side_px=10, budget=budget)
    assert budget.reserved_bytes == 0


def test_the_default_budget_is_half_the_cgroup_limit_capped(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    v2.write_text(f"{2 * GIB}\n")
    assert default_budget_bytes((v2,)) == GIB
    v2.write_text("max\n")
    v1.write_text("9223372036854771712\n")  # cgroup v1 "unlimited": physical memory decides
    assert available_memory_bytes((v2, v1)) == available_memory_bytes(())
    assert default_budget_bytes((v2, v1)) == min(available_memory_bytes(()) // 2, 4 * GIB)
    v1.write_text(f"{64 * GIB}\n")
    assert default_budget_bytes((v1,)) <= 4 * GIB
    assert default_budget_bytes((tmp_path / "missing",)) > 0
