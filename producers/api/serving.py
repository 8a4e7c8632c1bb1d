"""`llavaguard api` under uvicorn, logging like the worker: structlog JSON lines, redacted, one line per event.

uvicorn's own loggers (`uvicorn.error`, `uvicorn.access`) are routed through `worker.logs`, never through
uvicorn's default formatters; the access line carries the path without its query string, so a secret a
client puts in the URL (`?api_key=...`, a signed link) is never written. Headers are never logged. Unexpected
errors are logged by `problems.UnexpectedErrors` as one line with a plain traceback (no local variables).
"""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from producers.api.app import create_app
from worker.logs import configure_logging, route_stdlib_logging
from worker.settings import Settings, load_settings

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class PathWithoutQuery(logging.Filter):
    """uvicorn's access record (client, method, path with query, HTTP version, status) minus the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            record.args = (client, method, str(path).split("?", 1)[0], version, status)
        return True


def configure_api_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, json=settings.log_json)
    route_stdlib_logging(settings.log_level, json=settings.log_json)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()  # uvicorn's own, if a config installed them: every line goes to the root's
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, PathWithoutQuery) for f in access.filters):
        access.addFilter(PathWithoutQuery())


def logged_app() -> FastAPI:
    """The factory each `--workers N` child process imports: it configures its own logging first."""
    settings = load_settings()
    configure_api_logging(settings)
    return create_app(settings)


def serve_metrics(settings: Settings, metrics_dir: Path) -> None:
    """`/metrics` of every API process on this host and port (the worker's exporter, without queue depths)."""
    from worker.observability.exporter import serve as serve_exporter

    serve_exporter(settings.api_metrics_host, settings.api_metrics_port, metrics_dir)


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    configure_api_logging(settings)
    level = settings.log_level.lower()
    if workers > 1:
        create_app(settings)  # fail here, once, on a bad configuration (no keys)
        uvicorn.run("producers.api.serving:logged_app", factory=True, host=host, port=port, workers=workers,
                    proxy_headers=True, log_config=None, log_level=level)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True, log_config=None,
                    log_level=level)
