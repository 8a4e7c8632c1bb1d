"""Per-image CPU of the worker's image path, stage by stage, before (issue 8 path) and after (issue 15 item 3).

    python -m ops.bench.image_path [--iterations 60] [--filter box] [--max-side 1024] [--webhooks 300]

Generates photo-like JPEGs (smooth gradients, texture and sensor noise, not flat colour) at 640x480,
1280x800 and 4000x3000, serves them from a plain HTTP server in a child process on loopback (so its CPU
is not counted), and for each prints the CPU time (`time.process_time`, this process, every thread) of:
fetch (the worker's HttpFetcher), header (open + limits), decode, resize, encode, base64, request body
(the JSON the chat client posts), and the real `prepare_image` end to end. "today" is the path before
this change (LANCZOS, re-encode always); "new" uses the settings' defaults (`LLAVAGUARD_RESIZE_FILTER`,
`LLAVAGUARD_IMAGE_PASSTHROUGH`). The model server is not involved: this is the worker's own cost per image.
Then the cost of one webhook delivery (ops/bench/webhook_path.py).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ops.bench import webhook_path
from worker import composition
from worker.inference.base import VisionRequest
from worker.inference.sglang_wire import chat_body
from worker.intake import RenderOptions, prepare_image
from worker.intake.conform import validation_size
from worker.intake.images import draft_target
from worker.intake.pixels import fit_within
from worker.models import ImageRef
from worker.settings import Settings

SIZES = ((640, 480), (1280, 800), (4000, 3000))
TODAY = RenderOptions()
MAX_SIDE_PX = Settings.model_fields["max_image_side_px"].default
PROMPT = "policy text " * 400  # about the size of LlavaGuard's default policy


def photo_jpeg(width: int, height: int, noise_sigma: int = 20) -> bytes:
    """Gradients + fractal texture + sensor noise at JPEG quality 85: about 160 KB at 1280x800 and 3.5 ms to
    decode, like a camera photo of that size (flat colour would decode several times faster)."""
    gradients = (Image.linear_gradient("L"), Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90),
                 Image.radial_gradient("L"))
    bands = []
    for channel, gradient in enumerate(gradients):
        extent = (-2.0 + 0.3 * channel, -1.2, 0.8, 1.2)
        texture = Image.effect_mandelbrot((width, height), extent, 60 + 20 * channel)
        base = Image.blend(gradient.resize((width, height)), texture, 0.35)
        bands.append(Image.blend(base, Image.effect_noise((width, height), noise_sigma), 0.3))
    buffer = io.BytesIO()
    Image.merge("RGB", bands).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def cpu_ms(work: Callable[[], object], iterations: int) -> float:
    """Mean process CPU per call, best of three rounds (other engineers share the cores)."""
    work()
    rounds = []
    for _ in range(3):
        started = time.process_time()
        for _ in range(iterations):
            work()
        rounds.append((time.process_time() - started) / iterations * 1000)
    return min(rounds)


def stages(data: bytes, options: RenderOptions, iterations: int) -> dict[str, float]:
    """The stages of prepare_image replayed one by one (header, decode, resize, encode) with `options`."""
    probe = Image.open(io.BytesIO(data))
    size = probe.size
    target = fit_within(size, MAX_SIDE_PX)
    passthrough = options.passthrough and target == size
    drafted = draft_target(size, MAX_SIDE_PX, options.draft_undershoot)

    def opened() -> Image.Image:
        image = Image.open(io.BytesIO(data), formats=("JPEG",))
        image.getexif()
        return image

    def decoded() -> Image.Image:
        image = opened()
        image.draft(image.mode, validation_size(size) if passthrough else drafted)
        image.load()
        return image

    frame = decoded()
    fitted = fit_within(frame.size, MAX_SIDE_PX)
    resized = passthrough or fitted == frame.size
    shrunk = frame if resized else frame.resize(fitted, options.resample, reducing_gap=3.0)
    payload = data if passthrough else _encode(shrunk, options.jpeg_quality)
    return {
        "header": cpu_ms(opened, iterations),
        "decode": cpu_ms(decoded, iterations) - cpu_ms(opened, iterations),
        "resize": 0.0 if resized else cpu_ms(lambda: frame.resize(fitted, options.resample, reducing_gap=3.0),
                                             iterations),
        "encode": 0.0 if passthrough else cpu_ms(lambda: _encode(shrunk, options.jpeg_quality), iterations),
        "base64": cpu_ms(lambda: base64.b64encode(payload), iterations),
        "body": cpu_ms(lambda: json.dumps(chat_body(_vision(payload))).encode(), iterations),
    }


def _encode(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _vision(payload: bytes) -> VisionRequest:
    return VisionRequest(image=payload, mime="image/jpeg", prompt=PROMPT, temperature=0.2, top_p=0.95, top_k=50,
                         max_tokens=500)


def end_to_end(data: bytes, url: str, fetch: Callable[[ImageRef], bytes], options: RenderOptions,
               iterations: int) -> dict[str, float]:
    """The real functions: fetch over loopback, prepare_image, request body."""
    ref = ImageRef(url=url)

    def prepared() -> Any:
        return prepare_image(data, source=None, max_pixels=89_478_485, max_side_px=MAX_SIDE_PX, options=options)

    payload = prepared().payload
    fetch_ms = cpu_ms(lambda: fetch(ref), iterations)
    prepare_ms = cpu_ms(prepared, iterations)
    body_ms = cpu_ms(lambda: json.dumps(chat_body(_vision(payload))).encode(), iterations)
    return {"fetch": fetch_ms, "prepare_image": prepare_ms, "total": fetch_ms + prepare_ms + body_ms}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--filter", default=Settings.model_fields["resize_filter"].default)
    parser.add_argument("--max-side", type=int, default=Settings.model_fields["max_image_side_px"].default,
                        help="LLAVAGUARD_MAX_IMAGE_SIDE_PX")
    parser.add_argument("--webhooks", type=int, default=300, help="deliveries to measure (0: skip)")
    args = parser.parse_args(argv)
    global MAX_SIDE_PX
    MAX_SIDE_PX = args.max_side
    settings = Settings(allowed_networks=["127.0.0.0/8"], allow_http=True, resize_filter=args.filter)
    new = composition.render_options(settings)
    sources = composition.image_sources(settings)
    with tempfile.TemporaryDirectory() as tmp, _file_server(Path(tmp)) as base_url:
        print(f"max side {MAX_SIDE_PX} px; CPU ms per image (process_time); new filter: {args.filter}")
        print(f"{'image':>10} {'stage':>14} {'today':>8} {'new':>8}")
        for width, height in SIZES:
            data = photo_jpeg(width, height)
            name = f"{width}x{height}.jpg"
            (Path(tmp) / name).write_bytes(data)
            runs = max(3, args.iterations * 640 * 480 // (width * height))
            before, after = stages(data, TODAY, runs), stages(data, new, runs)
            before.update(end_to_end(data, f"{base_url}/{name}", sources.fetch, TODAY, runs))
            after.update(end_to_end(data, f"{base_url}/{name}", sources.fetch, new, runs))
            for stage in before:
                print(f"{width}x{height:<5} {stage:>14} {before[stage]:8.2f} {after[stage]:8.2f}")
            print(f"{'':>10} {'(bytes)':>14} {len(data):8d}")
    sources.close()
    if args.webhooks:
        webhook_path.report(args.webhooks)


class _file_server:
    """`python -m http.server` on a free loopback port, in a child process (its CPU is not ours)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


if __name__ == "__main__":
    main()
