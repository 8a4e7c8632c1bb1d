"""Wires logs, metrics and the heartbeat into a `llavaguard worker` process through Celery's signals and steps.

Which process runs what (the same for the `threads` and `prefork` pools):
- main process: the metrics HTTP server (`exporter.serve`, started here before the pool forks, so that a
  bad address stops the worker at start; a port another worker of this host serves is taken over when that
  worker stops), the heartbeat timer on the consumer loop, `task_received`;
- the process running a task (the main one under `threads`, a child under `prefork`): `task_prerun` binds
  the task and moderation ids to every log line until `task_postrun`, `task_retry` counts retries, and
  `worker_process_shutdown` marks an exiting child dead for the live gauges.

Import after `multiproc.prepare_multiprocess()`: this module imports prometheus_client (through `metrics`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celery.apps.worker
import redis
import structlog
from celery import Celery, bootsteps, signals
from celery.worker import state as worker_state
from prometheus_client.multiprocess import mark_process_dead
from structlog.typing import EventDict

from worker.consumer_timer import ConsumerTimerStep
from worker.errors import TransientError
from worker.logs import route_stdlib_logging
from worker.observability import metrics
from worker.observability.heartbeat import WATCH, Heartbeat
from worker.queues import MODERATE_TASK, WORKER_QUEUES

log = structlog.get_logger(__name__)
REDIS_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class WiringOptions:
    """What `install` needs from the settings (the composition root fills it: worker.composition.wiring_options)."""

    log_level: str
    json_logs: bool
    redis_url: str
    heartbeat_interval_s: float
    metrics_host: str
    metrics_port: int


def install(app: Celery, options: WiringOptions, queues: Sequence[str], metrics_dir: Path | None) -> None:
    """Connect everything; raises OSError when the metrics address cannot be bound (other than a port in use)."""
    json_logs = options.json_logs
    _setup_logging(options.log_level, json_logs)  # at once: warnings raised while Celery starts are JSON too
    signals.setup_logging.connect(lambda loglevel=None, **_: _setup_logging(loglevel, json_logs), weak=False)
    if json_logs:
        celery.apps.worker.safe_say = _json_safe_say
    signals.task_received.connect(_on_received, weak=False)
    signals.task_prerun.connect(_bind_task, weak=False)
    signals.task_postrun.connect(_unbind_task, weak=False)
    signals.task_retry.connect(_count_retry, weak=False)
    client = redis.Redis.from_url(
        options.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    transport = dict(app.conf.broker_transport_options)
    app.steps["consumer"].add(heartbeat_step(client, queues, transport, options.heartbeat_interval_s))
    metrics.initialise()  # before the pool forks and the port opens: the first scrape sees every series at 0
    if metrics_dir is not None:
        from worker.observability.exporter import QueueDepthCollector, serve

        signals.worker_process_shutdown.connect(_child_exited, weak=False)
        depth = QueueDepthCollector(client, [*WORKER_QUEUES, *queues], transport)
        serve(options.metrics_host, options.metrics_port, metrics_dir, extra=[depth])


class RecentTasks:
    """Task id -> moderation id of the messages this process received lately, to tag Celery's own lines.

    Celery's consumer logs about a task (at DEBUG: "TaskPool: Apply ...") before any task context exists;
    such a line names the task id, and this map supplies the moderation id that goes with it.
    """

    UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

    def __init__(self, size: int = 10_000) -> None:
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, task_id: str, moderation_id: str) -> None:
        with self._lock:
            self._ids[task_id] = moderation_id
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)

    def tag(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        """structlog processor: add the ids of the task a third-party line names, unless already bound."""
        if "moderation_id" not in event_dict and (found := self.UUID.search(str(event_dict.get("event", "")))):
            with self._lock:
                moderation_id = self._ids.get(found.group())
            if moderation_id is not None:
                event_dict.setdefault("task_id", found.group())
                event_dict["moderation_id"] = moderation_id
        return event_dict


RECENT = RecentTasks()


def _setup_logging(loglevel: int | str | None, json_logs: bool) -> None:
    """Celery's own logging, JSON like ours; receiving this signal stops Celery from configuring its own."""
    route_stdlib_logging(loglevel or logging.INFO, json=json_logs, extra=[RECENT.tag])
    # `_on_received` logs each received message with its ids; Celery's line would repeat it without them.
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)


def _json_safe_say(msg: str, f: Any = None) -> None:
    """Celery's shutdown notices ("worker: Warm shutdown"), as JSON lines too.

    Celery writes them from its signal handlers with a raw `os.write`, because taking a lock there (as any
    logger does) could deadlock against the interrupted code; this stays lock-free the same way.
    """
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    line = json.dumps({"event": msg.strip(), "logger": "celery.apps.worker", "level": "warning", "timestamp": now})
    with contextlib.suppress(OSError, ValueError):
        os.write(1 if sys.__stdout__ is None else sys.__stdout__.fileno(), f"{line}\n".encode())


def _moderation_id(args: Any) -> str | None:
    payload = args[0] if isinstance(args, list | tuple) and args else None
    found = payload.get("id") if isinstance(payload, dict) else None
    return found if isinstance(found, str) else None


def _on_received(request: Any = None, **_: Any) -> None:
    WATCH.message_received()
    if request is None:
        return
    moderation_id = _moderation_id(request.args) if request.name == MODERATE_TASK else None
    if moderation_id:
        RECENT.add(request.id, moderation_id)
    ids = {"moderation_id": moderation_id} if moderation_id else {}
    log.info("task.received", task=request.name, task_id=request.id, **ids)


def _bind_task(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    """Every line logged while this task runs (Celery's own included) carries its ids."""
    structlog.contextvars.clear_contextvars()
    moderation_id = _moderation_id(args) if getattr(task, "name", None) == MODERATE_TASK else None
    ids = {"moderation_id": moderation_id} if moderation_id else {}
    structlog.contextvars.bind_contextvars(task_id=task_id, **ids)


def _unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


def _count_retry(reason: Any = None, **_: Any) -> None:
    exc = getattr(reason, "exc", None)
    if isinstance(exc, TransientError):
        metrics.retry_scheduled(exc)


def _child_exited(pid: int | None = None, **_: Any) -> None:
    if pid is not None:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


def heartbeat_step(
    client: redis.Redis[bytes], queues: Sequence[str], options: dict[str, Any], interval_s: float
) -> type[bootsteps.StartStopStep]:
    """A consumer bootstep whose timer ticks on the consumer's event loop (see `heartbeat`)."""

    class HeartbeatStep(ConsumerTimerStep):
        def __init__(self, c: Any, **kwargs: Any) -> None:
            super().__init__(c, **kwargs)
            self.heartbeat: Heartbeat | None = None

        def start(self, c: Any) -> None:
            self.heartbeat = Heartbeat(client, c.hostname, queues, options, interval_s)
            self.heartbeat.forget_dead_neighbours()
            concurrency = int(getattr(c.pool, "num_processes", None) or c.controller.concurrency)
            heartbeat = self.heartbeat

            def tick() -> None:
                heartbeat.tick(concurrency=concurrency, reserved=len(worker_state.reserved_requests))

            tick()
            self.repeat(c, interval_s, tick)

        def shutdown(self, c: Any) -> None:
            self.stop(c)
            if self.heartbeat is not None:
                self.heartbeat.clear()

    return HeartbeatStep
