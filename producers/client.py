"""The producer SDK: enqueue moderations onto Redis and read their verdicts from the store.

    from producers import ModerationClient
    client = ModerationClient()                  # same LLAVAGUARD_* settings as the workers
    moderation_id = client.submit("https://example.com/upload.jpg", non_violating=["O6"])
    verdict = client.wait(moderation_id, timeout=30)

Submitting never waits on a GPU: it validates the arguments, publishes one small task message and returns
the moderation id. The same `idempotency_key` always maps to the same id and is enqueued once.
"""

from __future__ import annotations

import time
import uuid
from types import TracebackType
from typing import Any

import redis

from worker.categories import normalise_codes
from worker.celery_app import create_app
from worker.models import DEFAULT_POLICY, ImageRef, ModerationRequest, Verdict
from worker.queues import (
    MODERATE_TASK,
    QUEUES,
    REALTIME_QUEUE,
    SUBMITTED_KEY,
    SUBMITTED_TTL_S,
    redis_priority,
)
from worker.settings import Settings, load_settings
from worker.stores import VerdictStore, open_store

_IDEMPOTENCY_NAMESPACE = uuid.UUID("8d3f6c1e-5a0b-4c55-9a43-2f7d61c0b9e4")
IMAGE_SCHEMES = ("https://", "http://", "s3://")


def moderation_id_for_key(idempotency_key: str) -> str:
    """The moderation id an idempotency key always maps to."""
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, idempotency_key).hex


class ModerationClient:
    def __init__(
        self, *, redis_url: str | None = None, store_url: str | None = None, queue: str = REALTIME_QUEUE,
        settings: Settings | None = None,
    ) -> None:
        overrides = {k: v for k, v in {"redis_url": redis_url, "store_url": store_url}.items() if v}
        self.settings = settings.model_copy(update=overrides) if settings else load_settings(**overrides)
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}: expected one of {', '.join(QUEUES)}")
        self.queue = queue
        self._app = create_app(self.settings)
        self._redis = redis.Redis.from_url(self.settings.redis_url)
        self._store: VerdictStore | None = None

    def submit(
        self, image: str | bytes, *, policy: str | None = None, non_violating: list[str] | None = None,
        callback_url: str | None = None, metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None, priority: int | None = None,
    ) -> str:
        """Enqueue one image (URL/URI string or bytes); returns the moderation id."""
        request = ModerationRequest(
            id=moderation_id_for_key(idempotency_key) if idempotency_key else uuid.uuid4().hex,
            image=self._image_ref(image),
            policy=policy or DEFAULT_POLICY,
            non_violating=normalise_codes(non_violating or []),
            callback_url=callback_url,
            metadata=metadata or {},
            priority=priority,
        )
        marker = SUBMITTED_KEY + request.id
        if not self._redis.set(marker, self.queue, nx=True, ex=SUBMITTED_TTL_S):
            return request.id  # already enqueued under this idempotency key
        try:
            self._app.send_task(
                MODERATE_TASK, args=[request.model_dump(mode="json")], queue=self.queue,
                priority=redis_priority(priority),
            )
        except BaseException:
            self._redis.delete(marker)  # let a retry of the same key enqueue it
            raise
        return request.id

    def get(self, moderation_id: str) -> Verdict | None:
        """The stored verdict, or None while the moderation is pending (or unknown)."""
        return self.store.get(moderation_id)

    def wait(self, moderation_id: str, timeout: float = 60.0) -> Verdict:
        """Poll the store until the verdict exists; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            verdict = self.get(moderation_id)
            if verdict is not None:
                return verdict
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no verdict for moderation {moderation_id} within {timeout}s")
            time.sleep(self.settings.result_wait_poll_s)

    def is_submitted(self, moderation_id: str) -> bool:
        return bool(self._redis.exists(SUBMITTED_KEY + moderation_id))

    @property
    def store(self) -> VerdictStore:
        if self._store is None:
            self._store = open_store(
                self.settings.store_url, s3_endpoint_url=self.settings.s3_endpoint_url,
                s3_region=self.settings.s3_region,
            )
        return self._store

    def _image_ref(self, image: str | bytes) -> ImageRef:
        if isinstance(image, bytes | bytearray):
            if not image:
                raise ValueError("image bytes are empty")
            if len(image) > self.settings.max_image_bytes:
                raise ValueError(
                    f"image is {len(image)} bytes, over LLAVAGUARD_MAX_IMAGE_BYTES={self.settings.max_image_bytes}"
                )
            return ImageRef(data=bytes(image))
        if not image.startswith(IMAGE_SCHEMES):
            raise ValueError(f"image must be bytes or an https://, http:// or s3:// URL, got {image[:80]!r}")
        return ImageRef(url=image)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._redis.close()
        self._app.close()

    def __enter__(self) -> ModerationClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
