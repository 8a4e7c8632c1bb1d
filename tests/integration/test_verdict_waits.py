"""`VerdictWaits` against a real Redis: many waiters on one subscription, woken by the worker's hook (the
real `VerdictEvents`), each reading the store exactly twice (after subscribing, after its message)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import redis

from producers.verdict_waits import VerdictWaits, wait_sync
from worker.models import ImageInfo, ImageRef, ModerationRequest, PolicyRef, Verdict, utcnow
from worker.notify.verdict_events import VerdictEvents

WAITERS = 200


def verdict(moderation_id: str) -> Verdict:
    now = utcnow()
    return Verdict(id=moderation_id, status="completed", rating="Safe", category="NA: None applying",
                   policy=PolicyRef(name="p"),
                   image=ImageInfo(), created_at=now, completed_at=now)


def test_many_waiters_share_one_subscription_and_wake_on_the_hook(fresh_redis: str) -> None:
    client = redis.Redis.from_url(fresh_redis)
    hook = VerdictEvents(client)
    stored: dict[str, Verdict] = {"early": verdict("early")}
    reads: Counter[str] = Counter()

    def reader(moderation_id: str):  # type: ignore[no-untyped-def]
        async def read() -> Verdict | None:
            reads[moderation_id] += 1
            return stored.get(moderation_id)
        return read

    async def scenario() -> tuple[list[Verdict | None], float, int]:
        waits = VerdictWaits(fresh_redis)
        ids = [f"m{n}" for n in range(WAITERS)]
        tasks = [asyncio.create_task(waits.wait(i, 10, reader(i))) for i in [*ids, ids[0], "early"]]
        while sum(reads.values()) < len(tasks):  # every waiter subscribed and read the store once
            await asyncio.sleep(0.01)
        pubsubs = sum(1 for c in client.client_list() if int(c.get("sub", 0)) > 0)
        started = time.monotonic()
        for i in ids:
            stored[i] = verdict(i)
            request = ModerationRequest(id=i, image=ImageRef(url="https://example.com/x.png"))
            await asyncio.to_thread(hook, request, stored[i], True)
        results = await asyncio.gather(*tasks)
        took = time.monotonic() - started
        await waits.aclose()
        return results, took, pubsubs

    results, took, pubsubs = asyncio.run(scenario())
    assert [v.id if v else None for v in results] == [*(f"m{n}" for n in range(WAITERS)), "m0", "early"]
    assert pubsubs == 1, "one subscription connection for every waiter of the process"
    assert took < 3, f"woken by the messages ({took:.2f}s), not by a backstop read"
    assert reads["early"] == 1, "a verdict already stored is answered by the first read"
    assert reads["m5"] == 2 and reads["m0"] == 4, "one read after subscribing, one after the message"
    assert client.pubsub_numsub(*[f"llavaguard:verdicts:m{n}" for n in range(3)]) == [
        (f"llavaguard:verdicts:m{n}".encode(), 0) for n in range(3)], "unsubscribed once answered"


def test_the_blocking_wait_times_out_without_a_verdict_and_wakes_with_one(fresh_redis: str) -> None:
    client = redis.Redis.from_url(fresh_redis)
    started = time.monotonic()
    assert wait_sync(client, "none", 0.3, lambda: None) is None
    assert 0.3 <= time.monotonic() - started < 1.0
    stored: dict[str, Verdict] = {}

    def publish_later() -> None:
        time.sleep(0.3)
        stored["late"] = verdict("late")
        request = ModerationRequest(id="late", image=ImageRef(url="https://example.com/x.png"))
        VerdictEvents(client)(request, stored["late"], True)

    async def both() -> Verdict | None:
        waiting = asyncio.to_thread(wait_sync, client, "late", 10, lambda: stored.get("late"))
        result, _ = await asyncio.gather(waiting, asyncio.to_thread(publish_later))
        return result

    started = time.monotonic()
    woken = asyncio.run(both())
    assert woken is not None and woken.id == "late" and time.monotonic() - started < 2
