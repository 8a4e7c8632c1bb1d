"""The review step inside the real Moderator (composition-built parts, the stand-in as model server, real
Redis): seam order, the model's input retained (not the producer's bytes), a redelivered moderation queueing
once, nothing kept for a verdict not under review.
"""

from __future__ import annotations

from pathlib import Path

import redis

from worker import composition
from worker.models import ModerationRequest
from worker.notify.events import REVIEW_REQUESTED, delivery_id
from worker.notify.signing import new_secret
from worker.pipeline import Moderator
from worker.policy import PolicyRegistry
from worker.review.intake import ReviewIntake
from worker.review.queue import ReviewQueue
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

ENDPOINT = "http://127.0.0.1:9/hooks"


def test_a_redelivered_moderation_queues_once_and_keeps_the_model_input(
    tmp_path: Path, fresh_redis: str, standin: SGLangStandIn,
) -> None:
    settings = load_settings(redis_url=fresh_redis, sglang_url=standin.url, store_url=f"sqlite:///{tmp_path}/v.db",
                             webhook_url=ENDPOINT, webhook_secret=new_secret(), s3_endpoint_url="http://127.0.0.1:9",
                             unsafe_threshold=0.5, review_band="0.5,1.0")  # every Unsafe answer goes to review
    step, hook = composition.review_intake(settings), composition.review_hook(settings)
    backend = composition.sglang_client(settings)
    moderator = Moderator(
        policies=PolicyRegistry(None), intake=composition.intake(settings), judge=composition.judge(settings, backend),
        store=composition.verdict_store(settings), hooks=[hook],
        decider=composition.decider(settings), retain=step,
    )
    client: redis.Redis[bytes] = redis.Redis.from_url(fresh_redis)
    try:
        check(moderator, step, client)
    finally:
        for close in (moderator.store.close, moderator.intake.close, backend.close, step.images.redis.close,
                      hook.queue.redis.close, hook.outbox.close, client.close):
            close()


def check(moderator: Moderator, step: ReviewIntake, client: redis.Redis[bytes]) -> None:
    original = make_image("O4", size=(96, 64), fmt="BMP")  # a BMP is always re-encoded (no passthrough)
    request = ModerationRequest.model_validate({"id": "m1", "image": {"data": original}})
    first = moderator.moderate(request)
    again = moderator.moderate(request)  # a redelivered task: the stored verdict, hooks re-run
    assert first.decision == "review" and first.review is not None and first.review.status == "pending"
    assert again == first == moderator.store.get("m1")
    assert ReviewQueue(client).ids("pending", limit=10) == ["m1"]
    kept = step.images.get("m1")
    assert kept is not None and kept.mime == "image/jpeg" and kept.data.startswith(b"\xff\xd8")
    assert kept.data != original  # the prepared payload the model saw, not the producer's bytes
    outbox = moderator.hooks[0].outbox  # type: ignore[attr-defined]
    assert outbox.get(delivery_id("m1", REVIEW_REQUESTED, ENDPOINT)) is not None
    assert [d.event_type for d in outbox.recent(limit=10)].count(REVIEW_REQUESTED) == 1
    safe = moderator.moderate(ModerationRequest.model_validate({"id": "m2", "image": {"data": make_image("NA")}}))
    assert safe.decision == "allow" and safe.review is None
    assert step.images.get("m2") is None  # kept only for items under review
