"""Composition root: every object built from settings is built here, and nothing else reads settings into objects.

    settings ─▶ s3_client ─────────────────────────────┐ (one factory: worker/s3_clients.py)
             ─▶ intake (HTTP fetcher, S3 / file fetchers, decode budget)
             ─▶ inference_backend ─▶ judge
             ─▶ decider (thresholds: sidecar files beside the policies, else settings)
             ─▶ verdict_store
             ─▶ outbox (one per process) ─▶ webhook_hook, webhook_courier, webhook_poller
             ─▶ review_intake, review_hook, review_desk (worker/review: the human review queue)
             ─▶ dead_letter_list, dead_letters, delivery_guard, batch_runner
             ═▶ build_moderator: the pipeline of one worker process

Classes elsewhere take explicit arguments, never `Settings` (tests/unit/test_architecture.py checks it); the
Celery app module (worker/worker_app.py), the task modules and the CLI commands call these functions. This
module must never be imported by the modules it builds.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.banks.matcher import BankMatcher
from worker.banks.store import BankStore
from worker.batch import BatchRunner
from worker.batch_format import QueuedRecords
from worker.broker.deadletter import DeadLetterList
from worker.broker.verdicts import DeadLetters
from worker.buckets import BucketAllowlist
from worker.decisions import Decider, ThresholdsInvalid
from worker.decisions.thresholds import from_settings, sidecars
from worker.errors import SettingsError
from worker.inference.adaptive_window import AdaptiveWindow, ChangeReport, FixedWindow, Window
from worker.inference.base import InferenceBackend
from worker.inference.chat_client import ChatCompletionsClient
from worker.inference.dialects import OPENAI, VLLM
from worker.inference.llavaguard import LlavaGuardJudge
from worker.inference.sglang_client import SGLangClient
from worker.intake import AddressGuard, DecodeBudget, HttpFetcher, Intake, RenderOptions, S3Fetcher
from worker.intake.decode_budget import default_budget_bytes
from worker.intake.file_fetch import FileFetcher
from worker.intake.hosts import HostGate
from worker.intake.pace import Pace
from worker.intake.sources import INLINE, ImageSource, InlineSource, SourceRegistry, Unconfigured, UrlSource
from worker.matching.base import Matcher
from worker.matching.cache import VerdictCache
from worker.media.extract import FrameExtractor, FrameLimits
from worker.media.judging import FrameJudge
from worker.notify.callback_secrets import CallbackSecrets
from worker.notify.delivery import Courier
from worker.notify.hook import WebhookHook
from worker.notify.outbox import Outbox
from worker.notify.poller import Dispatch, Poller
from worker.notify.schedule import RetrySchedule
from worker.notify.sender import WebhookSender
from worker.notify.verdict_events import VerdictEvents
from worker.observability.metrics import count_verdict, set_inflight_window
from worker.observability.wiring import WiringOptions
from worker.pipeline import Moderator
from worker.policy import PolicyRegistry
from worker.queues import DELIVERIES_TTL_S
from worker.redelivery.deliveries import DeliveryCounter, DeliveryGuard
from worker.review.desk import ReviewDesk
from worker.review.hook import ReviewHook
from worker.review.intake import ReviewIntake
from worker.review.queue import ReviewQueue
from worker.review.retention import RetainedImages
from worker.review.sampling import SampleRates
from worker.s3_clients import IMAGE_FETCH_RETRIES, STORE_BOUNDS, S3Bounds, make_s3_client
from worker.settings import Settings
from worker.stores import VerdictStore, open_store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_lock = threading.Lock()
_outboxes: dict[tuple[str, int], Outbox] = {}


# ── S3 ────────────────────────────────────────────────────────────────────────────────────────────────────

def image_s3_bounds(settings: Settings) -> S3Bounds:
    """Image fetches from S3 are bounded like the HTTP fetcher (botocore's defaults wait 60 s per read)."""
    return S3Bounds(settings.fetch_connect_timeout_s, settings.fetch_read_timeout_s, IMAGE_FETCH_RETRIES)


def s3_client(settings: Settings, bounds: S3Bounds | None = None) -> S3Client:
    """The one S3 client factory; `bounds` default to the image-fetch bounds (audits read and upload images)."""
    return make_s3_client(settings.s3_endpoint_url, settings.s3_region, bounds or image_s3_bounds(settings))


def verdict_store(settings: Settings) -> VerdictStore:
    """The verdict store LLAVAGUARD_STORE_URL names (worker, SDK, API, audits and export all open it here)."""
    needs_s3 = settings.store_url.lower().startswith("s3://")
    return open_store(settings.store_url, s3_client=s3_client(settings, STORE_BOUNDS) if needs_s3 else None)


# ── intake and inference ─────────────────────────────────────────────────────────────────────────────────

def decode_budget(settings: Settings) -> DecodeBudget:
    """The one decode-memory budget of this process (tasks build one Moderator per process)."""
    total = settings.decode_memory_bytes or default_budget_bytes()
    return DecodeBudget(total, settings.decode_wait_s)


def http_fetcher(settings: Settings) -> HttpFetcher:
    return HttpFetcher(
        AddressGuard(settings.allowed_networks),
        allow_http=settings.allow_http,
        max_bytes=settings.max_image_bytes,
        connect_timeout_s=settings.fetch_connect_timeout_s,
        read_timeout_s=settings.fetch_read_timeout_s,
        total_timeout_s=settings.fetch_total_timeout_s,
        max_redirects=settings.fetch_max_redirects,
        hosts=HostGate(max_per_host=settings.fetch_max_per_host, wait_s=settings.fetch_host_wait_s,
                       cooloff_s=settings.fetch_slow_host_cooloff_s),
        pace=Pace(min_bytes_per_s=settings.fetch_min_bytes_per_s, window_s=settings.fetch_pace_window_s),
    )


def image_sources(settings: Settings, s3: S3Client | None = None) -> SourceRegistry:
    """Scheme -> source. Without an S3 client, `s3://` references fail FETCH_SCHEME_UNSUPPORTED; without a
    shared root, the file source refuses `file://` the same way."""
    http = UrlSource(http_fetcher(settings))
    if s3 is None:
        s3_source: ImageSource = Unconfigured("s3:// is not configured here")
    else:
        allowed = BucketAllowlist(settings.s3_allowed_buckets)
        s3_source = UrlSource(S3Fetcher(s3, settings.max_image_bytes, allowed=allowed))
    return SourceRegistry({
        "https": http, "http": http, "s3": s3_source,
        "file": UrlSource(FileFetcher(settings.shared_root, settings.max_image_bytes)),
        INLINE: InlineSource(settings.max_image_bytes),
    })


def intake(settings: Settings, s3: S3Client | None = None, budget: DecodeBudget | None = None) -> Intake:
    """Without a decode budget (build_moderator passes the process's one), only the per-image limit applies."""
    return Intake(
        image_sources(settings, s3), settings.max_image_pixels, settings.max_image_side_px,
        settings.max_image_bytes, settings.max_decode_bytes, budget, frame_extractor(settings, budget),
        render_options(settings),
        cpu_gate=threading.BoundedSemaphore(max(2, os.cpu_count() or 1)),  # issue 15 item 2: pixels per core
    )


def frame_extractor(settings: Settings, budget: DecodeBudget | None = None) -> FrameExtractor:
    """Animations and video (issue 10), held to the still-image limits plus their own."""
    limits = FrameLimits(
        max_frames=settings.max_frames, max_video_s=settings.max_video_s,
        max_decoded_frames=settings.max_decoded_frames, decode_timeout_s=settings.frames_decode_timeout_s,
    )
    return FrameExtractor(
        limits, max_pixels=settings.max_image_pixels, max_side_px=settings.max_image_side_px,
        max_decode_bytes=settings.max_decode_bytes, budget=budget,
    )


def frame_judge(settings: Settings) -> FrameJudge:
    return FrameJudge(concurrency=settings.frames_concurrency, unsafe_share=settings.frames_unsafe_share)


def render_options(settings: Settings) -> RenderOptions:
    """What may change what the model sees (filter, JPEG quality, passthrough), from settings."""
    return RenderOptions(resize_filter=settings.resize_filter, jpeg_quality=settings.jpeg_quality,
                         passthrough=settings.image_passthrough, draft_undershoot=settings.jpeg_draft_undershoot)


def inflight_window(settings: Settings) -> Window:
    """Issue 15 item 1: the adaptive window (gauge `llavaguard_inflight_window`, log `inference.window_changed`)
    up to `inflight_window`, or exactly `inflight_window` with `adaptive_window=false`."""
    if not settings.adaptive_window:
        set_inflight_window(settings.inflight_window)
        return FixedWindow(settings.inflight_window)
    report = ChangeReport(set_inflight_window, structlog.get_logger("worker.inference").info)
    window = AdaptiveWindow(min_limit=min(settings.inflight_window_min, settings.inflight_window),
                            max_limit=settings.inflight_window, on_change=report)
    set_inflight_window(window.limit)
    return window


def sglang_client(settings: Settings) -> SGLangClient:
    return SGLangClient(
        settings.sglang_url, api_key=settings.sglang_api_key,
        timeout_s=settings.inference_timeout_s, inflight_window=settings.inflight_window,
        window=inflight_window(settings),
    )


def inference_backend(settings: Settings) -> InferenceBackend:
    """The backend `LLAVAGUARD_BACKEND` names (issue 14); `transformers` is imported only when chosen (torch)."""
    if settings.backend == "sglang":
        return sglang_client(settings)
    if settings.backend == "transformers":
        return _transformers_backend(settings)
    return ChatCompletionsClient(
        settings.inference_url or settings.sglang_url, VLLM if settings.backend == "vllm" else OPENAI,
        api_key=settings.inference_api_key or settings.sglang_api_key, model=settings.inference_model,
        timeout_s=settings.inference_timeout_s, inflight_window=settings.inflight_window,
        window=inflight_window(settings),
    )


def _transformers_backend(settings: Settings) -> InferenceBackend:
    """The in-process backend; its module imports torch only when the model loads, so the base install needs none."""
    try:
        module = importlib.import_module("worker.inference.transformers_backend")
    except ImportError as exc:
        raise SettingsError(
            "LLAVAGUARD_BACKEND=transformers needs the extra: pip install 'llavaguard-worker[transformers]' "
            f"({exc})"
        ) from exc
    try:
        backend: InferenceBackend = module.TransformersBackend(
            settings.model_path or "", device=settings.device, dtype=settings.model_dtype,
            max_batch=settings.inflight_window, batch_wait_ms=settings.batch_wait_ms,
        )
    except ValueError as exc:  # a missing or unusable model path or device: a configuration error
        raise SettingsError(f"LLAVAGUARD_BACKEND=transformers: {exc}") from exc
    return backend


def model_server_probe(settings: Settings) -> ChatCompletionsClient | None:
    """A client for the worker's start-up look at its model server; None for the in-process backend."""
    if settings.backend == "transformers":
        return None  # no server to ask, and asking would load the weights on that thread
    backend = inference_backend(settings)
    assert isinstance(backend, ChatCompletionsClient)
    return backend


def judge(settings: Settings, backend: InferenceBackend) -> LlavaGuardJudge:
    return LlavaGuardJudge(
        backend, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
        max_tokens=settings.max_tokens,
        constrained=settings.constrained_decoding, max_parse_attempts=settings.max_parse_attempts,
        constraint=settings.constraint,
        top_logprobs=settings.top_logprobs,
    )


def decider(settings: Settings) -> Decider:
    """Every `<policy>.thresholds.json` validated, and the settings' thresholds for the other policies; a bad
    file is a SettingsError (the worker calls this at start, so it never fails mid-moderation)."""
    try:
        by_policy = sidecars(settings.policy_dir, PolicyRegistry(settings.policy_dir).names())
        return Decider(by_policy, from_settings(settings.unsafe_threshold, settings.review_band))
    except ThresholdsInvalid as exc:
        raise SettingsError(f"thresholds (LLAVAGUARD_POLICY_DIR): {exc}") from None
    except OSError as exc:
        raise SettingsError(f"thresholds (LLAVAGUARD_POLICY_DIR): cannot read: {exc}") from None


def build_moderator(settings: Settings) -> Moderator:
    store = verdict_store(settings)
    cache = verdict_cache(settings, store)
    return Moderator(
        policies=PolicyRegistry(settings.policy_dir),
        intake=intake(settings, s3_client(settings), decode_budget(settings)),
        judge=judge(settings, inference_backend(settings)),
        store=store,
        decider=decider(settings),
        # count first: the webhook and review hooks may raise and retry; the cache insert never raises
        hooks=[count_verdict, *([cache.remember] if cache else []), webhook_hook(settings), review_hook(settings),
               verdict_events(settings)],
        retain=review_intake(settings),
        frames=frame_judge(settings),
        matchers=[*bank_matchers(settings), *([cache] if cache else [])],  # banks first, then the verdict cache
    )


def verdict_events(settings: Settings) -> VerdictEvents:
    """Wakes synchronous waiters (`?wait=`, `moderate()`) once a verdict is stored."""
    return VerdictEvents(_side_redis(settings))


def verdict_cache(settings: Settings, store: VerdictStore) -> VerdictCache | None:
    """The verdict cache (issue 12) in the broker's Redis; None when LLAVAGUARD_MATCH=off."""
    if settings.match == "off":
        return None
    # Fail open fast: a lookup waits at most ~1 s for a Redis that is down, with one retry, then judges.
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                  retry=Retry(NoBackoff(), 1))
    return VerdictCache(
        client, store, mode=settings.match, max_distance=settings.match_pdq_distance,
        ttl_s=settings.match_ttl_s, max_entries=settings.match_max_entries,
    )


# ── hash banks ───────────────────────────────────────────────────────────────────────────────────────────

def bank_store(settings: Settings) -> BankStore:
    """The banks in the workers' Redis, for the matcher and `llavaguard banks`."""
    return BankStore(_side_redis(settings), settings.bank_max_entries)


def bank_matchers(settings: Settings) -> list[Matcher]:
    """The bank matcher, or none when LLAVAGUARD_BANKS_ENABLED is off."""
    return [BankMatcher(bank_store(settings), settings.bank_refresh_s)] if settings.banks_enabled else []


# ── webhooks ─────────────────────────────────────────────────────────────────────────────────────────────

def outbox(settings: Settings) -> Outbox:
    """The process's one outbox: the verdict hook, the poller and the courier share its connection pool."""
    key = (settings.redis_url, settings.webhook_retention_s)
    with _lock:
        if key not in _outboxes:
            _outboxes[key] = Outbox.from_url(settings.redis_url, retention_s=settings.webhook_retention_s)
        return _outboxes[key]


def webhook_hook(settings: Settings) -> WebhookHook:
    """The hook for `build_moderator`; it opens no connection until a verdict has a target."""
    return WebhookHook(outbox(settings), settings.webhook_url, settings.webhook_events)


def callback_secrets(settings: Settings) -> CallbackSecrets:
    return CallbackSecrets.derived([s.get_secret_value() for s in settings.callback_secret],
                                   [s.get_secret_value() for s in settings.webhook_secret])


def webhook_sender(settings: Settings) -> WebhookSender:
    return WebhookSender.of(
        allowed_networks=settings.allowed_networks, allow_http=settings.allow_http,
        timeout_s=settings.webhook_timeout_s,
        webhook_secrets=[secret.get_secret_value() for secret in settings.webhook_secret],
        callbacks=callback_secrets(settings),
    )


def webhook_courier(settings: Settings) -> Courier:
    return Courier(outbox(settings), webhook_sender(settings), RetrySchedule.of(settings.webhook_retry_schedule_s))


def webhook_poller(
    settings: Settings, dispatch: Dispatch, *, capacity: Callable[[], int] | None = None,
    lease_s: float | None = None,
) -> Poller:
    """Without `lease_s`, a claim lasts the visibility timeout (time for a published task to be picked up)."""
    return Poller(outbox(settings), dispatch, interval_s=settings.webhook_poll_interval_s,
                  lease_s=float(settings.visibility_timeout_s) if lease_s is None else lease_s, capacity=capacity)


# ── human review (issue 11) ──────────────────────────────────────────────────────────────────────────────

def retained_images(settings: Settings) -> RetainedImages:
    return RetainedImages(_side_redis(settings), retention_s=settings.review_retention_s,
                          max_items=settings.review_max_retained)


def review_intake(settings: Settings) -> ReviewIntake:
    """The Moderator's step after the decision: queue-worthy verdicts are marked and their input kept."""
    return ReviewIntake(retained_images(settings), SampleRates(settings.review_sample_allow,
                                                               settings.review_sample_block))


def review_hook(settings: Settings) -> ReviewHook:
    return ReviewHook(ReviewQueue(_side_redis(settings)), outbox(settings), settings.webhook_url)


def review_desk(settings: Settings, store: VerdictStore | None = None) -> ReviewDesk:
    """What reviewers use (the API, `llavaguard review`): the store, the queue, the copies, the outbox."""
    return ReviewDesk(store or verdict_store(settings), ReviewQueue(_side_redis(settings)), retained_images(settings),
                      outbox(settings), settings.webhook_url, keep_after_label=settings.review_keep_after_label)


# ── redelivery and dead letters ──────────────────────────────────────────────────────────────────────────

def build_delivery_guard(settings: Settings, moderator: Callable[[], Moderator]) -> DeliveryGuard:
    """Counts redeliveries in the broker's Redis; short timeouts, since counting fails open."""
    return DeliveryGuard(DeliveryCounter(_side_redis(settings), DELIVERIES_TTL_S), moderator, settings.max_deliveries)


def dead_letter_list(settings: Settings) -> DeadLetterList:
    """The dead-letter list (issue 8, item 1) for batch items and the `llavaguard deadletter` command."""
    return DeadLetterList(_side_redis(settings), settings.deadletter_max_entries)


def dead_letters(settings: Settings, moderator: Callable[[], Moderator]) -> DeadLetters:
    """Poison messages: dead letters, and request_invalid verdicts for the ids they carry."""
    return DeadLetters(moderator, dead_letter_list(settings), settings.max_message_bytes)


def batch_runner(settings: Settings, moderator: Callable[[], Moderator], dead_letter: Callable[[Any, str], None],
                 ) -> BatchRunner:
    """One pool of `inflight_window` threads per worker process for the items of every batch message."""
    pool = ThreadPoolExecutor(settings.inflight_window, thread_name_prefix="llavaguard-batch")
    return BatchRunner(moderator, pool, settings.max_retries, settings.fetch_host_max_deferrals,
                       dead_letter=dead_letter)


def queued_records(settings: Settings) -> QueuedRecords:
    """Clears audit batches' queued records (worker/batch_format.py) on the short-timeout side client."""
    return QueuedRecords(_side_redis(settings))


def wiring_options(settings: Settings) -> WiringOptions:
    """Logging, heartbeat and metrics endpoint of a worker process (worker/observability/wiring.py)."""
    return WiringOptions(
        log_level=settings.log_level, json_logs=settings.log_json, redis_url=settings.redis_url,
        heartbeat_interval_s=settings.heartbeat_interval_s, metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
    )


def _side_redis(settings: Settings) -> redis.Redis[bytes]:
    """A client for the small bookkeeping beside the queues: short timeouts, so Redis trouble never hangs a task."""
    return redis.Redis.from_url(settings.redis_url, socket_timeout=3.0, socket_connect_timeout=3.0)
