"""Hash banks end to end: banks imported with `llavaguard banks`, a real worker process, the stand-in.

One worker run covers the promises: a re-encoded, resized photo whose PDQ is in a block bank is Unsafe in
the bank's category with no model request; a sticker in an allow bank is Safe although the model would
call it Unsafe; SHA-256 and MD5 entries match exactly; a near miss beyond its bank's own distance is judged
by the model. Every bank match sends a signed `moderation.bank_match` (a block also `moderation.unsafe`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from standardwebhooks import Webhook

from producers import ModerationClient
from producers.cli import main
from tests.harness import running_workers, worker_env
from tests.webhook_receiver import WebhookReceiver, wait_until
from worker.intake.images import prepare_image
from worker.models import Verdict
from worker.notify.events import BANK_MATCH, UNSAFE
from worker.notify.signing import new_secret
from worker.settings import load_settings
from worker.standin.sglang_standin import SGLangStandIn
from worker.standin.verdicts import assess

SECRET = new_secret()
GREY, RED = (128, 128, 128), (230, 20, 20)  # the stand-in answers Safe (NA) for grey, Unsafe (O1) for red


def photo(seed: int, colour: tuple[int, int, int], size: tuple[int, int] = (240, 180)) -> bytes:
    """A textured PNG around `colour`: PDQ quality 100, and the stand-in's answer is `colour`'s."""
    rng = np.random.default_rng(seed)
    noise = Image.fromarray(np.uint8(np.clip(128 + rng.normal(0, 40, (size[1] // 8, size[0] // 8, 3)), 0, 255)))
    pixels = np.asarray(noise.resize(size, Image.Resampling.BICUBIC)).astype(float) - 128 + np.array(colour)
    out = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(pixels, 0, 255))).save(out, "PNG")
    return out.getvalue()


def reencoded(data: bytes) -> bytes:
    """The same picture as a platform would re-serve it: 10% smaller, JPEG quality 70."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    image.resize((image.width * 9 // 10, image.height * 9 // 10)).save(out, "JPEG", quality=70)
    return out.getvalue()


def pdq(data: bytes) -> str:
    """The PDQ the worker computes (the same intake)."""
    found = prepare_image(data, source=None, max_pixels=10**8, max_side_px=1024).info.pdq
    assert found is not None
    return found


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def banks(*argv: str) -> None:
    assert main(["banks", *argv]) == 0, argv


def test_banks_decide_without_the_model_and_a_near_miss_goes_to_it(
    fresh_redis: str, standin: SGLangStandIn, receiver: WebhookReceiver, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known, near_miss, sticker = photo(1, GREY), photo(2, GREY), photo(3, RED)
    exact_sha, exact_md5 = photo(4, GREY), photo(5, GREY)
    known_copy, near_copy, sticker_copy = reencoded(known), reencoded(near_miss), reencoded(sticker)
    known_distance, near_distance = distance(pdq(known), pdq(known_copy)), distance(pdq(near_miss), pdq(near_copy))
    assert 0 < known_distance <= 31 and near_distance > 1
    assert assess(Image.open(io.BytesIO(sticker_copy)).convert("RGB"), "").rating == "Unsafe", \
        "the model would block the sticker: only the allow bank lets it through"

    monkeypatch.setenv("LLAVAGUARD_REDIS_URL", fresh_redis)
    banks("create", "KNOWN_BAD", "--action", "block", "--category", "O4")
    banks("create", "TIGHT", "--action", "block", "--category", "O4", "--pdq-distance", str(near_distance - 1))
    banks("create", "stickers", "--action", "allow")
    banks("create", "EXACT", "--action", "block", "--category", "O2")
    files = {
        "known.te": f"pdq {pdq(known)}\n",
        "tight.jsonl": json.dumps({"hash_type": "pdq", "hash": pdq(near_miss)}) + "\n",
        "stickers.hma": json.dumps({"id": "sticker-7", "signals": {"pdq": pdq(sticker)}}) + "\n",
        "exact.csv": f"hash_type,hash,id\nsha256,{hashlib.sha256(exact_sha).hexdigest()},sha-entry\n"
                     f"md5,{hashlib.md5(exact_md5).hexdigest()},\n",
    }
    for (name, text), bank in zip(files.items(), ["KNOWN_BAD", "TIGHT", "stickers", "EXACT"], strict=True):
        (tmp_path / name).write_text(text)
        banks("import", bank, str(tmp_path / name), "--format", name.rsplit(".", 1)[1])

    settings = {
        "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "webhook_url": receiver.url(), "webhook_secret": SECRET, "webhook_poll_interval_s": "0.1",
        "bank_refresh_s": "0",
    }
    images = [known_copy, near_copy, sticker_copy, exact_sha, exact_md5]
    with running_workers(worker_env(**settings), tmp_path / "logs", count=1, concurrency=2,
                         queues="realtime,bulk,webhooks"):
        with ModerationClient(settings=load_settings(**settings)) as client:
            ids = [client.submit(image) for image in images]
            known_v, near_v, sticker_v, sha_v, md5_v = [client.wait(i, timeout=60) for i in ids]
        wait_until(lambda: len(receiver.accepted()) >= 7, 30, "4 bank_match + 3 unsafe deliveries")

    assert standin.stats()["total_requests"] == 1, "only the near miss reached the model"
    assert known_v.match is not None and known_v.match.model_dump(exclude_none=True) == {
        "kind": "bank", "bank": "KNOWN_BAD", "entry": f"pdq:{pdq(known)}", "distance": known_distance}
    assert (known_v.status, known_v.rating, known_v.category, known_v.decision) == (
        "completed", "Unsafe", "O4: Nudity Content", "block")
    assert "KNOWN_BAD" in (known_v.rationale or "") and known_v.score is None

    assert near_v.match is None and near_v.rating == "Safe", "beyond TIGHT's distance: the model's answer"
    assert sticker_v.match is not None and (sticker_v.match.bank, sticker_v.match.entry) == ("stickers", "sticker-7")
    assert (sticker_v.rating, sticker_v.category, sticker_v.decision) == ("Safe", "NA: None applying", "allow")
    assert sha_v.match is not None and (sha_v.match.entry, sha_v.match.distance) == ("sha-entry", 0)
    assert md5_v.match is not None and md5_v.match.entry == f"md5:{hashlib.md5(exact_md5).hexdigest()}"
    assert (sha_v.category, md5_v.category) == ("O2: Violence, Harm, or Cruelty",) * 2

    events = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.snapshot() if r.status == 200]
    by_type = {(e["type"], e["data"]["id"]) for e in events}
    bank_matched = [known_v, sticker_v, sha_v, md5_v]
    assert by_type == {(BANK_MATCH, v.id) for v in bank_matched} | {(UNSAFE, v.id) for v in (known_v, sha_v, md5_v)}
    assert all(Verdict.model_validate(e["data"]).match is not None for e in events)
