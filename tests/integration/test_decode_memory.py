"""Images under the pixel limit that decode to gigabytes (issue 8 item 2) never take a worker past 2 GiB.

On 92fed9d a 1x89,000,000 grey PNG of 173 KB peaked at ~3 GB, a 9000x9000 animated WebP of a few KB at
2.2 GB and an 81-megapixel RGBA PNG at 1.3 GB; four at once OOM-killed workers. Here one real worker gets four
such images at once plus an ordinary one: every moderation gets a verdict, the ones that fit the decode
budget are judged, the one that does not fails `image_decompression_bomb`, and the worker's peak RSS
(VmHWM) stays under 2 GiB. No cgroup can be created on the test machine, so the worker's decode budget is set
to what the default gives under a 2 GiB limit (half of it; `test_decode_memory` unit tests the derivation).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from producers import ModerationClient
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

GIB = 1024**3
WORKER_MEMORY_LIMIT = 2 * GIB


def tall_grey_png(height: int) -> bytes:
    """1 x `height` grey PNG, all black: ~173 KB for 89,000,000 rows."""
    rows = b"\x00\x00" * height
    ihdr = struct.pack(">IIBBBBB", 1, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows, 9)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def animated_webp(side: int) -> bytes:
    frames = [Image.new("RGB", (side, side), colour) for colour in ("black", "white")]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100)
    return buf.getvalue()


def rgba_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (side, side), (10, 20, 30, 128)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def big_images() -> dict[str, bytes]:
    return {
        "/tall-a.png": tall_grey_png(89_000_000),
        "/tall-b.png": tall_grey_png(88_999_999),
        "/anim.webp": animated_webp(9000),
        "/rgba.png": rgba_png(9000),
    }


def test_four_gigabyte_class_images_at_once_stay_under_2_gib_and_all_get_verdicts(
    fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer, tmp_path: Path,
    big_images: dict[str, bytes],
) -> None:
    for path, body in big_images.items():
        image_server.serve_bytes(path, body)
    settings = {
        "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "allowed_networks": "127.0.0.1/32", "allow_http": "true",
        "decode_memory_bytes": str(WORKER_MEMORY_LIMIT // 2),
    }
    with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=8) as (worker,):
        client = ModerationClient(settings=load_settings(**settings))
        ids = {path: client.submit(image_server.url(path)) for path in big_images}
        ordinary = client.submit(make_image("O4", size=(640, 480), fmt="JPEG"))
        verdicts = {path: client.wait(i, timeout=240) for path, i in ids.items()}
        ordinary_verdict = client.wait(ordinary, timeout=240)
        peak = peak_rss_bytes(worker.proc.pid)
        client.close()

    assert peak < WORKER_MEMORY_LIMIT, f"worker peaked at {peak / GIB:.2f} GiB"
    assert ordinary_verdict.status == "completed"
    for path in ("/tall-a.png", "/tall-b.png", "/rgba.png"):
        assert verdicts[path].status == "completed", (path, verdicts[path].error)
    webp = verdicts["/anim.webp"]
    assert webp.status == "failed" and webp.error is not None
    assert webp.error.code == "image_decompression_bomb" and "bytes" in webp.error.message
