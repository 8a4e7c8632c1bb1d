"""Waiting for one verdict without polling: woken by the worker's `llavaguard:verdicts:<id>` message.

Every waiter does the same three steps, which close the race with the worker: subscribe to its id's channel
(and see the subscription confirmed), read the store (the verdict may already be there), then wait for the
message (`worker/notify/verdict_events.py`, published after the store write) and read the store once more.
A slow backstop read every `BACKSTOP_S` covers a lost message (a worker whose publish failed).

`VerdictWaits` (asyncio) serves any number of waiters of one process on ONE Redis subscription connection:
a reader task fans the messages out to futures, so the API holds no thread (and no connection) per waiter.
`wait_sync` is the blocking form for `ModerationClient.moderate`: one subscription per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from worker.models import Verdict
from worker.queues import VERDICTS_CHANNEL

BACKSTOP_S = 5.0
"""A store read this often while waiting, in case a verdict's message was lost; never the way waiters wake."""
MAX_WAIT_S = 60.0
"""The longest `?wait=` the API accepts."""


class VerdictWaits:
    """One process's waiters, fanned out from one pub/sub connection (created on the first wait)."""

    def __init__(self, redis_url: str) -> None:
        self._redis: Any = aioredis.Redis.from_url(redis_url)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._start = asyncio.Lock()

    async def wait(
        self, moderation_id: str, timeout_s: float, read: Callable[[], Awaitable[Verdict | None]]
    ) -> Verdict | None:
        """The verdict once stored, or None if it is not stored within `timeout_s`."""
        channel = VERDICTS_CHANNEL + moderation_id
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            await self._subscribe(channel, woken)
            verdict = await read()
            while verdict is None:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(woken), min(left, BACKSTOP_S))
                verdict = await read()
            return verdict
        finally:
            await self._unsubscribe(channel, woken)

    async def _subscribe(self, channel: str, woken: asyncio.Future[None]) -> None:
        await self._started()
        waiters = self._waiters.setdefault(channel, set())
        waiters.add(woken)
        if len(waiters) == 1:
            confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            await self._pubsub.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(confirmed), BACKSTOP_S)
        elif channel in self._confirmed:
            await asyncio.wait_for(asyncio.shield(self._confirmed[channel]), BACKSTOP_S)

    async def _unsubscribe(self, channel: str, woken: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(channel, set())
        waiters.discard(woken)
        if not waiters and self._waiters.pop(channel, None) is not None:
            self._confirmed.pop(channel, None)
            if self._pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._pubsub.unsubscribe(channel)

    async def _started(self) -> None:
        async with self._start:
            if self._reader is None or self._reader.done():
                self._pubsub = self._redis.pubsub()
                await self._pubsub.subscribe(VERDICTS_CHANNEL)  # always subscribed: `listen` never ends by itself
                self._reader = asyncio.create_task(self._read(self._pubsub))

    async def _read(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                channel = message["channel"].decode()
                if message["type"] == "subscribe" and channel in self._confirmed:
                    _resolve(self._confirmed[channel])
                elif message["type"] == "message":
                    for woken in self._waiters.get(channel, ()):
                        _resolve(woken)
        except (redis.RedisError, OSError):
            pass  # the connection broke: wake everyone (they read the store), the next wait reconnects
        finally:
            for future in [*self._confirmed.values(), *(f for fs in self._waiters.values() for f in fs)]:
                _resolve(future)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, redis.RedisError, OSError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.aclose()
        await self._redis.aclose()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def wait_sync(
    client: redis.Redis[bytes], moderation_id: str, timeout_s: float, read: Callable[[], Verdict | None]
) -> Verdict | None:
    """The blocking form of `VerdictWaits.wait`, on a subscription of its own."""
    deadline = time.monotonic() + timeout_s
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(VERDICTS_CHANNEL + moderation_id)
        while (message := pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            if message["type"] == "subscribe":
                break  # confirmed: a verdict stored from now on is announced to us
        verdict = read()
        while verdict is None and (left := deadline - time.monotonic()) > 0:
            pubsub.get_message(timeout=min(left, BACKSTOP_S))
            verdict = read()
        return verdict
    finally:
        pubsub.close()
