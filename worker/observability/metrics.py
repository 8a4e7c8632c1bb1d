"""The worker's Prometheus metrics (all named `llavaguard_*`) and the functions that record them.

Process model: `llavaguard worker` sets `PROMETHEUS_MULTIPROC_DIR` before anything imports prometheus_client
(see `worker.observability.exporter`), so every value below lives in a per-process mmap file and the exporter
in the worker's main process sums the files of all processes: one process with many threads (the `threads`
pool) and a parent with forked children (`prefork`) are counted the same way. Gauges therefore say how
processes combine: the in-flight gauge is `livesum`, the sum over processes still alive.

Recording must never slow or break a moderation: these functions touch process memory and a local mmap
file only, never the network. Label values are bounded sets (ratings, category codes, error codes, stages,
webhook outcomes); never put ids, URLs or anything a client chooses into a label.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import product
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from worker.broker.guard import REASONS as DEAD_LETTER_REASONS
from worker.categories import CATEGORIES, RATINGS
from worker.errors import ErrorCode, StoreUnavailable, TransientError
from worker.models import MatchInfo, ModerationRequest, Verdict
from worker.notify.schedule import Outcome

Stage = Literal["fetch", "inference", "store"]

REGISTRY = CollectorRegistry()
"""The metrics of this process when no multiprocess directory is set (tests, one-off tools)."""

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)

VERDICTS = Counter(
    "llavaguard_verdicts", "Completed verdicts stored, by rating and category code (O1..O9, NA).",
    ["rating", "category"], registry=REGISTRY,
)
FAILURES = Counter(
    "llavaguard_failures", "Failed verdicts stored, by error code.", ["code"], registry=REGISTRY,
)
RETRIES = Counter(
    "llavaguard_retries", "Transient failures that scheduled a retry, by reason.", ["reason"], registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "llavaguard_stage_duration_seconds", "Time spent in one pipeline stage of one moderation attempt.",
    ["stage"], buckets=_SECONDS_BUCKETS, registry=REGISTRY,
)
VERDICT_LATENCY = Histogram(
    "llavaguard_verdict_latency_seconds", "From the request's creation (submit) to its verdict being stored.",
    buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "llavaguard_inflight_requests", "Moderations waiting on the model server right now.",
    multiprocess_mode="livesum", registry=REGISTRY,
)
INFLIGHT_WINDOW = Gauge(
    "llavaguard_inflight_window", "Requests the worker may keep in flight against the model server (the adaptive "
    "window, summed over processes).", multiprocess_mode="livesum", registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "llavaguard_webhook_deliveries", "Webhook delivery attempts, by outcome (delivered, retry, gone, refused).",
    ["outcome"], registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "llavaguard_webhook_failures", "Webhook deliveries given up on (dead-lettered), by reason.",
    ["reason"], registry=REGISTRY,
)

# Issue 10: model requests per moderation (frames x image tokens is the GPU cost of a video).
MediaKindLabel = Literal["still", "animation", "video"]
FRAMES_PER_MODERATION = Histogram(
    "llavaguard_frames_per_moderation", "Frames judged (model requests made) by one moderation, by media kind.",
    ["kind"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY,
)

# Poison messages (issue 8, item 1).
DEAD_LETTERS = Counter(
    "llavaguard_dead_letters", "Messages (or batch items) moved to the dead-letter list, by reason.",
    ["reason"], registry=REGISTRY,
)

# Matching re-uploads (issue 12).
MATCH_KINDS: tuple[str, ...] = get_args(MatchInfo.model_fields["kind"].annotation)
MATCHES = Counter(
    "llavaguard_matches", "Verdicts answered by a match (exact, pdq: the verdict cache; bank) instead of the model.",
    ["kind"], registry=REGISTRY,
)
GPU_CALLS_AVOIDED = Counter(
    "llavaguard_gpu_calls_avoided", "Model requests not made because a match answered.", registry=REGISTRY,
)
MatchCacheOperation = Literal["lookup", "insert", "full"]
MATCH_CACHE_SKIPPED = Counter(
    "llavaguard_match_cache_skipped", "Verdict-cache operations skipped (fail open): `lookup`/`insert` when Redis "
    "failed, `full` when the cache held its maximum of entries.", ["operation"], registry=REGISTRY,
)
# Hash banks (issue 12 item 3): by action and hash type, never by bank name (operators choose names).
BANK_ACTIONS = ("block", "allow")
BANK_HASH_TYPES = ("pdq", "sha256", "md5")
BANK_MATCHES = Counter(
    "llavaguard_bank_matches", "Images decided by a hash bank without the model, by action and hash type.",
    ["action", "hash_type"], registry=REGISTRY,
)
BANK_REFRESH_FAILURES = Counter(
    "llavaguard_bank_refresh_failures", "Bank reloads from Redis that failed (the worker kept its last copy).",
    registry=REGISTRY,
)


@contextmanager
def stage(name: Stage) -> Iterator[None]:
    """Time one pipeline stage; a stage that raises is observed too (a slow failure is still slow)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=name).observe(time.perf_counter() - started)


@contextmanager
def in_flight() -> Iterator[None]:
    """Count a moderation as waiting on the model server while the block runs."""
    IN_FLIGHT.inc()
    try:
        yield
    finally:
        IN_FLIGHT.dec()


def set_inflight_window(limit: int) -> None:
    """The window of this process (`inference.window_changed`); the exporter sums the live processes."""
    INFLIGHT_WINDOW.set(limit)


def count_verdict(request: ModerationRequest, verdict: Verdict, first: bool) -> None:
    """Verdict hook (`Moderator.hooks`): count each moderation once, when its verdict is first stored.

    A redelivered task finds its verdict already stored (`first` is False) and is not counted again.
    """
    if not first:
        return
    if verdict.status == "completed" and verdict.rating and verdict.category:
        VERDICTS.labels(rating=verdict.rating, category=verdict.category.split(":", 1)[0]).inc()
    elif verdict.error is not None:
        FAILURES.labels(code=verdict.error.code).inc()
    latency_s = (verdict.completed_at - request.created_at).total_seconds()
    VERDICT_LATENCY.observe(max(latency_s, 0.0))


def matched(kind: str) -> None:
    """Count one verdict answered by a match: no model request was made for it."""
    MATCHES.labels(kind=kind).inc()
    GPU_CALLS_AVOIDED.inc()


def match_cache_skipped(operation: MatchCacheOperation) -> None:
    MATCH_CACHE_SKIPPED.labels(operation=operation).inc()


def retry_scheduled(exc: TransientError) -> None:
    """Count a transient failure that will be retried (a model server or a store that is down)."""
    RETRIES.labels(reason=retry_reason(type(exc))).inc()


def retry_reason(kind: type[TransientError]) -> str:
    return "store_unavailable" if issubclass(kind, StoreUnavailable) else str(kind.code)


def frames_judged(kind: MediaKindLabel, frames: int) -> None:
    """Observe the frames one moderation sent to the model (1 for a still image)."""
    FRAMES_PER_MODERATION.labels(kind=kind).observe(frames)


def webhook_attempt(outcome: str) -> None:
    """Count one webhook delivery attempt: `delivered`, `retry`, `gone` or `refused` (notify's outcomes)."""
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


WEBHOOK_FAILURE_REASONS = ("exhausted", Outcome.GONE.value, Outcome.REFUSED.value)
"""Why a delivery is given up on: retries exhausted, or an outcome that ends it at once (notify.delivery)."""


def webhook_failed(reason: str) -> None:
    """Count one webhook delivery given up on for good: one of `WEBHOOK_FAILURE_REASONS`."""
    WEBHOOK_FAILURES.labels(reason=reason).inc()


def dead_lettered(reason: str) -> None:
    """Count one message or batch item moved to `llavaguard:deadletter` (reason from a fixed set)."""
    DEAD_LETTERS.labels(reason=reason).inc()


def bank_matched(action: str, hash_type: str) -> None:
    """Count one image decided by a bank (both labels from fixed sets)."""
    BANK_MATCHES.labels(action=action, hash_type=hash_type).inc()


def _transient_kinds(kind: type[TransientError] = TransientError) -> list[type[TransientError]]:
    return [kind, *(k for sub in kind.__subclasses__() for k in _transient_kinds(sub))]


def known_labels() -> dict[MetricWrapperBase, list[dict[str, str]]]:
    """Every labelled metric with every label value it can take, read from the code's own enums.

    Why: a series that does not exist yet has no `increase()`, so an alert on the first failure after a
    start would miss it. A new error code, dead-letter reason, webhook outcome or transient error class is
    picked up here without editing this list; a new labelled metric must be added (a test checks that).
    """
    codes = [category.split(":", 1)[0] for category in CATEGORIES]
    return {
        VERDICTS: [{"rating": r, "category": c} for r, c in product(RATINGS, codes)],
        FAILURES: [{"code": code.value} for code in ErrorCode],
        RETRIES: [{"reason": r} for r in dict.fromkeys(retry_reason(k) for k in _transient_kinds())],
        STAGE_SECONDS: [{"stage": s} for s in get_args(Stage)],
        WEBHOOK_DELIVERIES: [{"outcome": o.value} for o in Outcome],
        WEBHOOK_FAILURES: [{"reason": r} for r in WEBHOOK_FAILURE_REASONS],
        DEAD_LETTERS: [{"reason": r} for r in DEAD_LETTER_REASONS],
        FRAMES_PER_MODERATION: [{"kind": k} for k in get_args(MediaKindLabel)],
        MATCHES: [{"kind": k} for k in MATCH_KINDS],
        MATCH_CACHE_SKIPPED: [{"operation": o} for o in get_args(MatchCacheOperation)],
        BANK_MATCHES: [{"action": a, "hash_type": h} for a, h in product(BANK_ACTIONS, BANK_HASH_TYPES)],
    }


def initialise() -> None:
    """Create every known labelled series at 0 in this process (the worker's main process, at start).

    `labels()` only creates the child: nothing is added. In multiprocess mode it writes a 0 into this
    process's file, and the exporter sums files, so the zeros add nothing to any other process's counts
    (children forked later start their own files; a restarted worker's zeros replace nothing).
    """
    for metric, label_sets in known_labels().items():
        for labels in label_sets:
            metric.labels(**labels)
