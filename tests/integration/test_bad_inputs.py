"""Every bad input ends as a `failed` verdict with its own code, never reaches the model, never stalls a worker."""

from __future__ import annotations

import http.server
import io
import struct
import time
import zlib
from pathlib import Path

import boto3
from PIL import Image

from producers import ModerationClient
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.queues import MODERATE_TASK
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

MAX_BYTES = 2_000_000


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: a decompression bomb by its declared size."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def slow_handler(req: http.server.BaseHTTPRequestHandler) -> None:
    req.send_response(200)
    req.send_header("Content-Length", "1000")
    req.end_headers()
    req.wfile.write(b"\x89PNG")
    req.wfile.flush()
    time.sleep(6)


def test_bad_inputs_fail_with_specific_codes_and_never_reach_the_model(
    fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer, s3_endpoint: str,
    bucket: str, tmp_path: Path,
) -> None:
    canary = LoopbackHTTPServer("127.0.0.2")
    good_png = make_image("O4", size=(64, 64), fmt="PNG")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key="empty.png", Body=b"")
    image_server.serve_bytes("/empty.png", b"")
    image_server.serve_bytes("/huge.png", b"\0" * (MAX_BYTES + 10))
    image_server.routes["/slow.png"] = slow_handler
    canary.serve_bytes("/secret.png", good_png)
    cases: list[tuple[str | bytes, str, dict[str, str]]] = [
        (image_server.url("/empty.png"), "image_empty", {}),
        (f"s3://{bucket}/empty.png", "image_empty", {}),
        (b"this is not an image at all", "image_not_an_image", {}),
        (good_png[: len(good_png) // 2], "image_truncated", {}),
        (png_declaring(50_000, 50_000), "image_decompression_bomb", {}),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
         "image_format_unsupported", {}),
        (image_server.url("/missing.png"), "fetch_not_found", {}),
        (canary.url("/secret.png"), "fetch_address_refused", {}),
        (f"http://0x7f000002:{canary.port}/secret.png", "fetch_address_refused", {}),
        (image_server.url("/huge.png"), "image_too_large", {}),
        (image_server.url("/slow.png"), "fetch_timeout", {}),
        (f"s3://{bucket}/nope.png", "s3_not_found", {}),
        (good_png, "policy_unknown", {"policy": "no-such-policy"}),
    ]
    settings = {
        "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "s3_endpoint_url": s3_endpoint, "allowed_networks": "127.0.0.1/32", "allow_http": "true",
        "max_image_bytes": str(MAX_BYTES), "fetch_read_timeout_s": "1", "fetch_total_timeout_s": "3",
        "s3_allowed_buckets": bucket,
    }
    try:
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4):
            client = ModerationClient(settings=load_settings(**settings))
            ids = [client.submit(image, **kwargs) for image, _, kwargs in cases]  # type: ignore[arg-type]
            verdicts = [client.wait(i, timeout=60) for i in ids]
            # A message no producer of ours would send: it still ends as a verdict under its id.
            client._app.send_task(MODERATE_TASK, args=[{"id": "raw-invalid", "image": {}, "metadata": {"k": 1}}])
            invalid = client.wait("raw-invalid", timeout=60)
            after = client.wait(client.submit(good_png), timeout=60)
            client.close()
    finally:
        canary.close()

    for (image, code, _), verdict in zip(cases, verdicts, strict=True):
        label = image if isinstance(image, str) else image[:20]
        assert verdict.status == "failed", label
        assert verdict.error is not None and verdict.error.code == code, (label, verdict.error)
        assert verdict.error.message
        assert verdict.rating is None and verdict.category is None
    assert invalid.status == "failed" and invalid.error and invalid.error.code == "request_invalid"
    assert invalid.metadata == {"k": 1}
    assert canary.hits == [], "the guard let a request reach 127.0.0.2"
    assert after.status == "completed" and after.category == "O4: Nudity Content"
    assert standin.stats()["total_requests"] == 1, "only the good image reached the model server"
