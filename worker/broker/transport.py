"""kombu's Redis transport with a guard between Redis and kombu: poison messages never reach Celery.

Celery picks this transport through `broker_transport` (worker/celery_app.py). Only the two places where kombu
turns raw queue bytes into a message are replaced (`_brpop_read` for the consumer, `_get` for polling); all
else (the unacked hash and visibility timeout, restoring, publishing) is kombu's own. A refused message is
moved to the dead-letter list, logged once, counted, handed to the listeners (which record `request_invalid`
verdicts for the moderation ids it carries), and the consumer goes on. Nothing here may raise on a bad
message: that is the failure this module exists to prevent.

Priority lists keep the names producers in any language push to (`realtime:3`, `worker.queues.priority_list`)
while kombu's `sep` stays its default: kombu uses `sep` for both, and its binding tables are shared with
every other Celery client (Flower, `celery inspect`), which assume the default (issue 9). `_q_for_pri` is
where kombu names a priority list (publish, consume, restore, size, purge, delete); `_queue_of` undoes it.
Old-separator binding members are read tolerantly by every process, and converted when a worker's first
channel connects (`migrate_legacy_bindings`, set by `llavaguard worker` only: a producer upgraded before the
workers must not rewrite tables the old workers still read; worker/broker/bindings.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Empty

from worker.broker.bindings import migrate_legacy_members, parse_member
from worker.broker.deadletter import DeadLetterList, new_entry
from worker.broker.guard import Rejection, inspect
from worker.queues import KNOWN_TASKS, PRIORITY_SEP, priority_list

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
        # Not `sep`: kombu's default must stay, for the binding tables other clients read (see above).
        *(o for o in kombu_redis.Channel.from_transport_options if o != "sep"),
        "max_message_bytes", "deadletter_max_entries", "migrate_legacy_bindings",
    )
    max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
    deadletter_max_entries = DEFAULT_DEADLETTER_MAX_ENTRIES
    migrate_legacy_bindings = False
    _bindings_migrated: set[str] = set()
    """Brokers whose old binding members this process has converted (once each, at the first channel)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        where = f"{self.connection.client.as_uri()}|{self.global_keyprefix}"
        if self.migrate_legacy_bindings and where not in self._bindings_migrated:
            self._bindings_migrated.add(where)
            try:
                migrate_legacy_members(self.client, sep=self.sep, key_prefix=self.global_keyprefix)
            except self.connection_errors as exc:  # tolerated by get_table meanwhile; retried next process
                log.warning("broker.binding_migration_failed", error=type(exc).__name__)

    def _q_for_pri(self, queue: str, pri: int) -> str:
        return priority_list(queue, self.priority(pri))  # type: ignore[no-untyped-call]

    def _queue_of(self, key: str) -> str:
        """The queue a list belongs to: `realtime:3` -> `realtime`; a consumed queue's own name is itself."""
        if key in self._active_queues:
            return key
        queue, sep, step = key.rpartition(PRIORITY_SEP)
        if sep and step.isdigit() and int(step) in self.priority_steps and int(step) != 0:
            return queue
        return key

    def get_table(self, exchange: str) -> list[tuple[str, str, str]]:
        """kombu's, except that an old-separator member is understood and an unreadable one skipped: kombu
        would raise in every publish to the exchange (control replies included)."""
        with self.conn_or_acquire() as client:
            values = client.smembers(self.keyprefix_queue % exchange)
        table = []
        for value in values:
            member = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            binding = parse_member(member, self.sep)
            if binding is None:
                log.warning("broker.binding_unreadable", exchange=exchange, member=member[:200])
            else:
                table.append(binding)
        return table

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
            dest = self._queue_of(key)
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
                key = self._q_for_pri(queue, pri)
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
