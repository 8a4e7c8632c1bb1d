"""The worker processes' one Celery app, configured from the environment: both task modules register on it.

worker/tasks.py (moderation) and worker/notify/tasks.py (webhooks) import `app` and `settings` from here and
never from each other, so there is no import circle; worker/tasks.py imports the webhook tasks, so every
process that loads the moderation tasks (`llavaguard worker`, `celery -A worker.tasks ...`) also registers
`llavaguard.deliver_webhook`. Importing this module reads the settings and configures logging: only worker
processes (and Celery's command line) do, never producers, which build their own app with
`worker.celery_app.create_app`.
"""

from __future__ import annotations

from worker.celery_app import create_app
from worker.logs import configure_logging
from worker.settings import load_settings

settings = load_settings()
configure_logging(settings.log_level, json=settings.log_json)
app = create_app(settings)
