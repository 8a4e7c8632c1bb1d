"""structlog configuration: JSON lines on stdout, context (moderation id, task id) bound per task.

Never log image bytes or secrets: log events carry ids, codes and sizes only. As a second line of defence
every line, ours and third-party ones alike, passes `redact`: long base64 runs (image bytes, tokens) and
credentials in URLs, query strings and `Bearer` headers are masked before anything is written.

`route_stdlib_logging` sends the standard `logging` records of libraries (Celery, kombu, httpx ...) through
the same renderer and the same write lock, so a worker's stdout is one JSON object per line. Each line
leaves in ONE write call (WriteLogger, not print's two), so prefork children sharing stdout never interleave.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{100,}")
_DATA_FIELD = re.compile(r"""(['"]data['"]\s*:\s*b?['"])[A-Za-z0-9+/=_-]+""")  # inline image bytes, even cut short
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*):[^\s@/]+@")
_SECRET_QUERY = re.compile(
    r"([?&][^=&\s]*(?:sig|signature|token|key|credential|secret|password)[^=&\s]*=)[^&\s\"']+", re.IGNORECASE
)
_BEARER = re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)

CREDENTIAL_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
"""Libraries whose DEBUG lines carry credentials: botocore logs request headers (the SigV4 `Authorization`
header names the access key id) and the strings it signs. They never log below INFO, whatever LOG_LEVEL says."""


def redact_text(text: str) -> str:
    text = _BASE64_RUN.sub(lambda m: f"<redacted {len(m.group())} chars>", text)
    text = _DATA_FIELD.sub(r"\1<redacted>", text)
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    text = _SECRET_QUERY.sub(r"\1***", text)
    return _BEARER.sub(r"\1***", text)


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask image bytes and credentials in every string value of a log event."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


def _renderer(json: bool) -> Processor:
    if json:
        return structlog.processors.JSONRenderer()
    # Never rich's traceback (structlog's default when rich is installed): it prints local variables.
    return structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            _renderer(json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def _task_id_from_record(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Celery passes its log context as `extra={"data": {...}}`: lift the task id into a field."""
    record = event_dict.get("_record")
    data = getattr(record, "data", None)
    if isinstance(data, dict) and data.get("id") and "task_id" not in event_dict:
        event_dict["task_id"] = str(data["id"])
    return event_dict


class _StdoutHandler(logging.Handler):
    """Writes through a structlog WriteLogger: one lock per file for stdlib and structlog lines alike."""

    def __init__(self) -> None:
        super().__init__()
        self._out = structlog.WriteLogger(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.msg(self.format(record))
        except Exception:  # noqa: BLE001  (logging must never raise into the caller; stdlib's own rule)
            self.handleError(record)


def route_stdlib_logging(level: str | int = "INFO", *, json: bool = True, extra: Sequence[Processor] = ()) -> None:
    """Render standard-library log records (and warnings) like structlog's; `extra` processors enrich them."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _task_id_from_record,
            *extra,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            _renderer(json),
        ],
    )
    handler = _StdoutHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdoutHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()])
    for name in CREDENTIAL_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
    logging.captureWarnings(True)
