"""kombu's Redis transport with a guard between Redis and kombu: poison messages never reach Celery.

Celery picks this transport through `broker_transport` (worker/celery_app.py). Only the two places where kombu
turns raw queue bytes into a message are replaced (`_brpop_read` for the consumer, `_get` for polling); all
else (priority sub-queues and `sep`, the unacked hash and visibility timeout, restoring, publishing) is
kombu's own. A refused message is moved to the dead-letter list, logged once, counted, handed to the
listeners (which record `request_invalid` verdicts for the moderation ids it carries), and the consumer goes
on. Nothing here may raise on a bad message: that is the failure this module exists to prevent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Empty

from worker.broker.deadletter import DeadLetterList, new_entry
from worker.broker.guard import Rejection, inspect
from worker.queues import KNOWN_TASKS

__all__ = ["TRANSPORT", "GuardedTransport", "new_entry", "on_dead_letter"]

log = structlog.get_logger(__name__)

DeadLetterListener = Callable[[Rejection, dict[str, Any]], None]
"""Called with each refusal and its dead-letter entry (in the consumer, after the entry is stored)."""
_listeners: list[DeadLetterListener] = []

CONTROL_REPLY_SUFFIX = ".reply.celery.pidbox"
"""Celery's control-command reply queues: kombu messages, not tasks."""
DEFAULT_MAX_MESSAGE_BYTES = 48 * 1024 * 1024
DEFAULT_DEADLETTER_MAX_ENTRIES = 1000


def on_dead_letter(listener: DeadLetterListener) -> None:
    """Register a listener (worker/tasks.py registers the one recording failed verdicts)."""
    if listener not in _listeners:
        _listeners.append(listener)


class GuardedChannel(kombu_redis.Channel):
    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.Channel.from_transport_options, "max_message_bytes", "deadletter_max_entries",
    )
    max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
    deadletter_max_entries = DEFAULT_DEADLETTER_MAX_ENTRIES

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's `_brpop_read`, with the guard where kombu would `loads` the item."""
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            raw_key, item = dest__item
            key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else str(raw_key)
            dest = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = self._admit(item, key, dest)
            if message is not None:
                self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def _get(self, queue: str, timeout: Any = None) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                key = str(self._q_for_pri(queue, pri))  # type: ignore[no-untyped-call]
                item = client.rpop(key)
                if item:
                    self._maybe_update_queues_expire(client, queue)  # type: ignore[no-untyped-call]
                    message = self._admit(item, key, queue)
                    if message is not None:
                        return message
            self._maybe_update_queues_expire(client, queue)  # type: ignore[no-untyped-call]
            raise Empty()

    def _admit(self, item: bytes | str, key: str, queue: str) -> dict[str, Any] | None:
        """The message when it may reach kombu; otherwise dead-letter it and return None. Queues other than
        ours (Celery's control replies, `*.reply.celery.pidbox`) carry no tasks: the task checks skip them."""
        raw = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)
        verdict = inspect(raw, max_bytes=int(self.max_message_bytes), known_tasks=KNOWN_TASKS,
                          tasks=not queue.endswith(CONTROL_REPLY_SUFFIX))
        if isinstance(verdict, Rejection):
            self._dead_letter(verdict, raw, key)
            return None
        return verdict

    def _dead_letter(self, rejection: Rejection, raw: bytes, key: str) -> None:
        entry = new_entry(reason=rejection.reason, detail=rejection.detail, queue=key, raw=raw,
                          keep_bytes=int(self.max_message_bytes))
        try:
            with self.conn_or_acquire() as client:
                DeadLetterList(client, int(self.deadletter_max_entries)).push(entry)
        except Exception as exc:  # noqa: BLE001  (Redis gone: the message is lost either way; keep consuming)
            log.error("broker.dead_letter_unstored", reason=rejection.reason, error=type(exc).__name__)
        log.warning("broker.dead_letter", dead_letter_id=entry["id"], reason=rejection.reason,
                    detail=rejection.detail, queue=key, size=len(raw))
        from worker.observability import metrics  # late: producers import this module before metrics are set up

        metrics.dead_lettered(rejection.reason)
        for listener in list(_listeners):
            try:
                listener(rejection, entry)
            except Exception as exc:  # noqa: BLE001  (a listener must never stop the consumer)
                log.error("broker.dead_letter_listener_failed", reason=rejection.reason, error=repr(exc)[:200])


class GuardedTransport(kombu_redis.Transport):
    Channel = GuardedChannel


TRANSPORT = f"{__name__}:{GuardedTransport.__name__}"
"""The value of Celery's `broker_transport`."""
