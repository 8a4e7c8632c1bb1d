"""`AsyncModerationClient`: the SDK for asyncio backends, with the same methods as `ModerationClient`.

    async with AsyncModerationClient() as client:
        moderation_id = await client.submit("https://example.com/upload.jpg")
        verdict = await client.wait(moderation_id, timeout=30)
        verdict = await client.moderate("https://example.com/upload.jpg", timeout=10)  # woken by the worker

Publishing goes through Celery/kombu, which are synchronous, and the stores are synchronous too; so every
call runs the synchronous client in a worker thread (`asyncio.to_thread`) and the event loop never blocks.
Everything the synchronous client holds is thread-safe (redis-py's pool, kombu's producer pool, SQLAlchemy's
engine, boto3's client). `wait` sleeps with `asyncio.sleep`, never holding a thread between polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from producers.client import ModerationClient, Submission
from producers.verdict_waits import VerdictWaits
from worker.errors import StoreNotFound
from worker.models import ModerationRequest, Verdict
from worker.queues import REALTIME_QUEUE
from worker.settings import Settings


class AsyncModerationClient:
    def __init__(
        self, *, redis_url: str | None = None, store_url: str | None = None, queue: str = REALTIME_QUEUE,
        settings: Settings | None = None, create_store: bool = False,
    ) -> None:
        self.sync = ModerationClient(redis_url=redis_url, store_url=store_url, queue=queue, settings=settings,
                                     create_store=create_store)
        self.settings = self.sync.settings
        self.queue = queue
        self._waits: VerdictWaits | None = None

    async def submit(
        self, image: str | bytes, *, policy: str | None = None, non_violating: list[str] | None = None,
        callback_url: str | None = None, metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None, priority: int | None = None, owner: str | None = None,
    ) -> str:
        """Enqueue one image; returns the moderation id (see `ModerationClient.submit`)."""
        return await asyncio.to_thread(
            self.sync.submit, image, policy=policy, non_violating=non_violating, callback_url=callback_url,
            metadata=metadata, idempotency_key=idempotency_key, priority=priority, owner=owner,
        )

    async def submit_many(
        self, items: Iterable[Submission | str | bytes], *, policy: str | None = None,
        non_violating: list[str] | None = None, callback_url: str | None = None,
        metadata: dict[str, Any] | None = None, priority: int | None = None, owner: str | None = None,
    ) -> list[str]:
        """Enqueue many images at once, pipelined; ids in the order of `items`."""
        return await asyncio.to_thread(
            self.sync.submit_many, list(items), policy=policy, non_violating=non_violating,
            callback_url=callback_url, metadata=metadata, priority=priority, owner=owner,
        )

    async def enqueue_batch(self, requests: list[ModerationRequest]) -> list[str]:
        return await asyncio.to_thread(self.sync.enqueue_batch, requests)

    async def build_request(self, item: Submission, *, owner: str | None = None) -> ModerationRequest:
        """Validation; a keyed item reads the id secret from Redis once, so this runs in a thread."""
        return await asyncio.to_thread(self.sync.build_request, item, owner=owner)

    async def get(self, moderation_id: str) -> Verdict | None:
        """The stored verdict, or None while pending (or unknown)."""
        return await asyncio.to_thread(self.sync.get, moderation_id)

    async def get_many(self, ids: Iterable[str]) -> dict[str, Verdict]:
        return await asyncio.to_thread(self.sync.get_many, list(ids))

    async def wait(self, moderation_id: str, timeout: float = 60.0) -> Verdict:
        """Poll the store until the verdict exists; TimeoutError after `timeout` seconds.

        A store that does not exist yet is waited for, as by `ModerationClient.wait`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            missing: StoreNotFound | None = None
            try:
                verdict = await self.get(moderation_id)
            except StoreNotFound as exc:
                verdict, missing = None, exc
            if verdict is not None:
                return verdict
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(f"no verdict for moderation {moderation_id} within {timeout}s"
                                   + (f"; {missing}" if missing else ""))
            await asyncio.sleep(self.settings.result_wait_poll_s)

    async def moderate(
        self, image: str | bytes, *, policy: str | None = None, non_violating: list[str] | None = None,
        metadata: dict[str, Any] | None = None, idempotency_key: str | None = None, priority: int | None = None,
        timeout: float = 60.0,
    ) -> Verdict:
        """Submit one image and return its verdict (TimeoutError after `timeout` seconds), woken by the worker."""
        moderation_id = await self.submit(image, policy=policy, non_violating=non_violating, metadata=metadata,
                                          idempotency_key=idempotency_key, priority=priority)
        verdict = await self.wait_for(moderation_id, timeout)
        if verdict is None:
            raise TimeoutError(f"no verdict for moderation {moderation_id} within {timeout}s")
        return verdict

    async def wait_for(self, moderation_id: str, timeout: float) -> Verdict | None:
        """The verdict once stored, or None after `timeout` seconds; all waits of this client share one
        subscription (`producers/verdict_waits.py`) and hold no thread while they wait."""
        if self._waits is None:
            self._waits = VerdictWaits(self.settings.redis_url)
        return await self._waits.wait(moderation_id, timeout, lambda: self._read_or_none(moderation_id))

    async def _read_or_none(self, moderation_id: str) -> Verdict | None:
        try:
            return await self.get(moderation_id)
        except StoreNotFound:
            return None

    async def is_submitted(self, moderation_id: str) -> bool:
        return await asyncio.to_thread(self.sync.is_submitted, moderation_id)

    async def pending_owner(self, moderation_id: str) -> tuple[bool, str | None]:
        return await asyncio.to_thread(self.sync.pending_owner, moderation_id)

    async def submitted(self, ids: Iterable[str]) -> set[str]:
        return await asyncio.to_thread(self.sync.submitted, list(ids))

    async def aclose(self) -> None:
        if self._waits is not None:
            await self._waits.aclose()
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncModerationClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
