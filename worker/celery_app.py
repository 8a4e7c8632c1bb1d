"""The Celery application: configuration only (tasks live in worker.tasks).

Delivery guarantees (see ../README.md, "Not losing work"): late acks + reject on worker loss = at least once;
the store's insert-if-absent by moderation id turns that into exactly one verdict. One visibility timeout
is set everywhere Celery reads it; workers renew the leases of the messages they hold (worker/redelivery), so
a long task or countdown is never redelivered while its worker lives.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from worker.broker.transport import TRANSPORT
from worker.queues import PRIORITY_STEPS, REALTIME_QUEUE
from worker.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "queue_order_strategy": "priority",
        "priority_steps": PRIORITY_STEPS,
        # No `sep`: priority lists are `realtime:3` by worker/broker/transport.py, kombu's bookkeeping keeps the
        # separator Flower and `celery inspect` assume (issue 9).
        # Scan for messages of dead workers every few seconds (kombu's default is every ~100 s): living
        # workers renew their leases (worker/redelivery/lease.py), so recovery takes one visibility timeout
        # after the last renewal plus at most one scan interval.
        "unacked_restore_interval": max(1, min(5, settings.visibility_timeout_s // 12)),
        "unacked_restore_throttle": 1,
        # A worker killed inside a restore scan leaves kombu's scan mutex behind until it expires (default
        # 300 s, which would stall every recovery that long); concurrent scans are safe (each restore is a
        # WATCHed transaction), the mutex only saves work.
        "unacked_mutex_expire": max(5, settings.visibility_timeout_s // 4),
        # Poison messages (issue 8, item 1): worker/broker refuses them before kombu decodes anything.
        "max_message_bytes": settings.max_message_bytes,
        "deadletter_max_entries": settings.deadletter_max_entries,
    }
    return {
        "broker_url": settings.redis_url,
        "broker_transport": TRANSPORT,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "visibility_timeout": settings.visibility_timeout_s,
        "broker_connection_retry_on_startup": True,
        "task_create_missing_queues": True,  # realtime and bulk, declared by use
        "task_default_queue": REALTIME_QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "enable_utc": True,
    }


def create_app(settings: Settings) -> Celery:
    app = Celery("llavaguard")
    app.conf.update(celery_config(settings))
    return app
