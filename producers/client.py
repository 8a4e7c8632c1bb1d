"""The producer SDK: enqueue moderations onto Redis and read their verdicts from the store.

    from producers import ModerationClient
    client = ModerationClient()                  # same LLAVAGUARD_* settings as the workers
    moderation_id = client.submit("https://example.com/upload.jpg", non_violating=["O6"])
    verdict = client.wait(moderation_id, timeout=30)
    verdict = client.moderate("https://example.com/upload.jpg", timeout=10)   # submit and wait, woken by the worker

Submitting never waits on a GPU: it validates the arguments, publishes one small task message and returns
the moderation id. The same `idempotency_key` always maps to the same id and is enqueued once; reused for a
different image or other options it raises `IdempotencyConflict` (see `producers.ids` for how ids are made).
`submit_many` validates every item first, then publishes them all pipelined (see `producers.publish`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from pydantic import ValidationError

from producers.ids import IdSecret, keyed_moderation_id, random_moderation_id, record_owner, submission_record
from producers.publish import Publisher
from producers.references import IMAGE_SCHEMES, ImageRefused, check_image_url
from producers.verdict_waits import wait_sync
from worker.categories import normalise_codes
from worker.celery_app import create_app
from worker.errors import IdempotencyConflict, StoreNotFound
from worker.intake.file_fetch import file_uri
from worker.models import DEFAULT_POLICY, ImageRef, ModerationRequest, Verdict
from worker.queues import QUEUES, REALTIME_QUEUE
from worker.settings import Settings, load_settings
from worker.stores import VerdictStore, require_existing_store
from worker.validation_errors import describe

__all__ = ["IMAGE_SCHEMES", "IdempotencyConflict", "ImageRefused", "ModerationClient", "Submission"]


@dataclass(frozen=True)
class Submission:
    """One item of `submit_many`: the arguments of `submit`; a None field takes `submit_many`'s default."""

    image: str | bytes | PathLike[str]
    policy: str | None = None
    non_violating: list[str] | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    priority: int | None = None


class ModerationClient:
    def __init__(
        self, *, redis_url: str | None = None, store_url: str | None = None, queue: str = REALTIME_QUEUE,
        settings: Settings | None = None, create_store: bool = False,
    ) -> None:
        """`create_store`: whether reading verdicts may create a store that does not exist yet (the API, which
        answers `pending` before any verdict, does); readers otherwise raise StoreNotFound."""
        overrides = {k: v for k, v in {"redis_url": redis_url, "store_url": store_url}.items() if v}
        self.settings = settings.model_copy(update=overrides) if settings else load_settings(**overrides)
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}: expected one of {', '.join(QUEUES)}")
        self.queue = queue
        self._app = create_app(self.settings)
        self._redis = redis.Redis.from_url(self.settings.redis_url)
        self._publisher = Publisher(self._app, self._redis, queue)
        self._id_secret = IdSecret(self._redis)
        self._store: VerdictStore | None = None
        self._create_store = create_store

    def submit(
        self, image: str | bytes | PathLike[str], *, policy: str | None = None,
        non_violating: list[str] | None = None, callback_url: str | None = None, metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None, priority: int | None = None, owner: str | None = None,
    ) -> str:
        """Enqueue one image (URL/URI string, bytes, or a local file's path); returns the moderation id.

        A path's bytes go inline (the worker need not see the file) and the verdict records its `file://`
        URI as `image.source`.

        `owner` (the HTTP API passes the caller's key id) scopes the idempotency key and is recorded on the
        verdict; SDK callers leave it None."""
        item = Submission(image, policy, non_violating, callback_url, metadata, idempotency_key, priority)
        return self.submit_many([item], owner=owner)[0]

    def submit_many(
        self, items: Iterable[Submission | str | bytes | PathLike[str]], *, policy: str | None = None,
        non_violating: list[str] | None = None, callback_url: str | None = None,
        metadata: dict[str, Any] | None = None, priority: int | None = None, owner: str | None = None,
    ) -> list[str]:
        """Enqueue many images at once (pipelined); ids in the order of `items`.

        Every item is validated before anything is published: one bad item raises ValueError (naming its
        index) and enqueues nothing; so does an idempotency key reused for a different request
        (`IdempotencyConflict`, a ValueError). Keyword arguments are defaults for bare images and unset fields.
        """
        defaults = Submission(b"", policy, non_violating, callback_url, metadata, None, priority)
        requests, records = [], []
        for index, entry in enumerate(items):
            item = _with_defaults(entry, defaults)
            try:
                request = self.build_request(item, owner=owner)
            except ImageRefused as exc:
                raise ImageRefused(exc.code, f"item {index}: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
            requests.append(request)
            records.append(submission_record(request, keyed=item.idempotency_key is not None))
        try:
            self._publisher.publish_each(requests, records)  # already enqueued under its key: a no-op
        except IdempotencyConflict as exc:
            where = f"item {exc.index}: " if len(requests) > 1 else ""
            raise IdempotencyConflict(f"{where}{exc.message}", index=exc.index) from None
        return [r.id for r in requests]

    def enqueue_batch(self, requests: list[ModerationRequest]) -> list[str]:
        """Enqueue prepared requests as ONE batch message (bulk audits); returns the ids newly enqueued."""
        return self._publisher.publish_batch(requests)

    def build_request(self, item: Submission, *, owner: str | None = None) -> ModerationRequest:
        """The request `submit` would enqueue for `item`; ValueError for a bad image, category or priority.

        A keyed item's id needs the deployment's id secret: the first such call reads it from Redis."""
        key = item.idempotency_key
        moderation_id = keyed_moderation_id(self._id_secret.get(), owner, key) if key else random_moderation_id()
        try:
            image = self._image_ref(item.image)
            return ModerationRequest(
                id=moderation_id, owner=owner,
                image=image,
                policy=item.policy or DEFAULT_POLICY,
                non_violating=normalise_codes(item.non_violating or []),
                callback_url=item.callback_url,
                metadata=item.metadata or {},
                priority=item.priority,
            )
        except ValidationError as exc:
            raise ValueError(describe(exc)) from None

    def get(self, moderation_id: str) -> Verdict | None:
        """The stored verdict, or None while the moderation is pending (or unknown).

        StoreNotFound (a SettingsError) when the store does not exist: a reader never creates it.
        """
        return self._reader().get(moderation_id)

    def get_many(self, ids: Iterable[str]) -> dict[str, Verdict]:
        """The stored verdicts among `ids`, by id; pending and unknown ids are left out."""
        return self._reader().get_many(list(ids))

    def wait(self, moderation_id: str, timeout: float = 60.0) -> Verdict:
        """Poll the store until the verdict exists; TimeoutError after `timeout` seconds.

        A store that does not exist yet is waited for (the worker creates it with its first verdict); if it
        still does not exist at the deadline, the TimeoutError says so.
        """
        deadline = time.monotonic() + timeout
        while True:
            missing: StoreNotFound | None = None
            try:
                verdict = self.get(moderation_id)
            except StoreNotFound as exc:
                verdict, missing = None, exc
            if verdict is not None:
                return verdict
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no verdict for moderation {moderation_id} within {timeout}s"
                                   + (f"; {missing}" if missing else ""))
            time.sleep(self.settings.result_wait_poll_s)

    def moderate(
        self, image: str | bytes | PathLike[str], *, policy: str | None = None,
        non_violating: list[str] | None = None, metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None, priority: int | None = None, timeout: float = 60.0,
    ) -> Verdict:
        """Submit one image and return its verdict (TimeoutError after `timeout` seconds): for a caller that
        needs the answer inline. Woken by the worker the moment the verdict is stored, never by polling."""
        moderation_id = self.submit(image, policy=policy, non_violating=non_violating, metadata=metadata,
                                    idempotency_key=idempotency_key, priority=priority)
        verdict = self.wait_for(moderation_id, timeout)
        if verdict is None:
            raise TimeoutError(f"no verdict for moderation {moderation_id} within {timeout}s")
        return verdict

    def wait_for(self, moderation_id: str, timeout: float) -> Verdict | None:
        """The verdict once stored (woken by the worker's message), or None after `timeout` seconds."""
        return wait_sync(self._redis, moderation_id, timeout, lambda: self._read_or_none(moderation_id))

    def _read_or_none(self, moderation_id: str) -> Verdict | None:
        try:
            return self.get(moderation_id)
        except StoreNotFound:
            return None  # the worker creates it with its first verdict

    def _reader(self) -> VerdictStore:
        if self._store is None and not self._create_store:
            require_existing_store(self.settings.store_url)
        return self.store

    def is_submitted(self, moderation_id: str) -> bool:
        return bool(self._publisher.submitted([moderation_id]))

    def pending_owner(self, moderation_id: str) -> tuple[bool, str | None]:
        """(enqueued?, its owner) for an id without a verdict, from its marker and submission record."""
        record = self._publisher.record(moderation_id)
        if record is not None:
            return True, record_owner(record)
        return self.is_submitted(moderation_id), None

    def id_secret(self) -> bytes:
        """The deployment's id secret (for audit ids); never log it."""
        return self._id_secret.get()

    def submitted(self, ids: Iterable[str]) -> set[str]:
        """The ids among `ids` that were enqueued (their marker exists), in one round trip."""
        return self._publisher.submitted(ids)

    def forget_submitted(self, ids: Iterable[str]) -> None:
        """Drop enqueued markers whose messages are known to be lost, so the ids can be enqueued again."""
        self._publisher.forget(ids)

    @property
    def store(self) -> VerdictStore:
        if self._store is None:
            # Late: the composition root imports the worker's metrics, and `python -m producers.cli worker`
            # imports this module before the worker may set PROMETHEUS_MULTIPROC_DIR (commands/run_worker.py).
            from worker.composition import verdict_store

            self._store = verdict_store(self.settings)
        return self._store

    def _image_ref(self, image: str | bytes | PathLike[str]) -> ImageRef:
        if isinstance(image, PathLike):  # a local file: its bytes go inline, its path is recorded as the source
            path = Path(image).absolute()
            return self._image_ref(path.read_bytes()).model_copy(update={"origin": file_uri(path)})
        if isinstance(image, bytes | bytearray):
            if not image:
                raise ValueError("image bytes are empty")
            if len(image) > self.settings.max_image_bytes:
                raise ValueError(
                    f"image is {len(image)} bytes, over LLAVAGUARD_MAX_IMAGE_BYTES={self.settings.max_image_bytes}"
                )
            return ImageRef(data=bytes(image))
        return ImageRef(url=check_image_url(image, s3_allowed_buckets=self.settings.s3_allowed_buckets,
                                            allow_http=self.settings.allow_http))

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


def _with_defaults(item: Submission | str | bytes | PathLike[str], defaults: Submission) -> Submission:
    if not isinstance(item, Submission):
        return Submission(item, defaults.policy, defaults.non_violating, defaults.callback_url,
                          defaults.metadata, None, defaults.priority)
    return Submission(
        item.image,
        item.policy if item.policy is not None else defaults.policy,
        item.non_violating if item.non_violating is not None else defaults.non_violating,
        item.callback_url if item.callback_url is not None else defaults.callback_url,
        item.metadata if item.metadata is not None else defaults.metadata,
        item.idempotency_key,
        item.priority if item.priority is not None else defaults.priority,
    )
