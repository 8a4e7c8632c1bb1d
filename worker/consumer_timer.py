"""A Celery consumer bootstep base whose work runs on a timer of the consumer's own event loop.

Why the consumer's loop: a wedged or dead consumer stops ticking, so what the tick proves (a heartbeat, a
renewed lease) stops being proven with it. Subclasses schedule in `start`; `stop` and `shutdown` cancel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import bootsteps


class ConsumerTimerStep(bootsteps.StartStopStep):  # type: ignore[misc]
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.timer: Any = None

    def repeat(self, c: Any, interval_s: float, tick: Callable[..., None], *args: Any) -> None:
        self.timer = c.timer.call_repeatedly(interval_s, tick, args)

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)
