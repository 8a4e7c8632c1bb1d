"""Composition root: builds the pipeline's parts from settings. Nothing else reads settings into objects."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import boto3
import redis
from botocore.config import Config

from worker.broker.deadletter import DeadLetterList
from worker.errors import SettingsError
from worker.inference.base import InferenceBackend
from worker.inference.chat_client import ChatCompletionsClient
from worker.inference.dialects import OPENAI, VLLM
from worker.inference.llavaguard import LlavaGuardJudge
from worker.inference.sglang_client import SGLangClient
from worker.intake import DecodeBudget, Intake
from worker.intake.decode_budget import default_budget_bytes
from worker.notify.hook import webhook_hook
from worker.observability.metrics import count_verdict
from worker.pipeline import Moderator
from worker.policy import PolicyRegistry
from worker.queues import DELIVERIES_TTL_S
from worker.redelivery.deliveries import DeliveryCounter, DeliveryGuard
from worker.settings import Settings
from worker.stores import open_store


def s3_client(settings: Settings) -> Any:
    """An S3 client for image fetches, bounded like the HTTP fetcher (botocore's defaults wait 60 s per read)."""
    config = Config(
        connect_timeout=settings.fetch_connect_timeout_s, read_timeout=settings.fetch_read_timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config)


def decode_budget(settings: Settings) -> DecodeBudget:
    """The one decode-memory budget of this process (tasks build one Moderator per process)."""
    total = settings.decode_memory_bytes or default_budget_bytes()
    return DecodeBudget(total, settings.decode_wait_s)


def sglang_client(settings: Settings) -> SGLangClient:
    return SGLangClient(
        settings.sglang_url, api_key=settings.sglang_api_key,
        timeout_s=settings.inference_timeout_s, inflight_window=settings.inflight_window,
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


def build_moderator(settings: Settings) -> Moderator:
    backend = inference_backend(settings)
    judge = LlavaGuardJudge(
        backend, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
        max_tokens=settings.max_tokens,
        constrained=settings.constrained_decoding, max_parse_attempts=settings.max_parse_attempts,
        constraint=settings.constraint,
        top_logprobs=settings.top_logprobs,
    )
    store = open_store(
        settings.store_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
    )
    return Moderator(
        policies=PolicyRegistry(settings.policy_dir),
        intake=Intake.from_settings(settings, s3_client(settings), decode_budget(settings)),
        judge=judge,
        store=store,
        hooks=[count_verdict, webhook_hook(settings)],  # count first: a webhook hook may raise and retry
    )


def build_delivery_guard(settings: Settings, moderator: Callable[[], Moderator]) -> DeliveryGuard:
    """Counts redeliveries in the broker's Redis; short timeouts, since counting fails open."""
    return DeliveryGuard(DeliveryCounter(_side_redis(settings), DELIVERIES_TTL_S), moderator, settings.max_deliveries)


def dead_letter_list(settings: Settings) -> DeadLetterList:
    """The dead-letter list (issue 8, item 1) for batch items and the `llavaguard deadletter` command."""
    return DeadLetterList(_side_redis(settings), settings.deadletter_max_entries)


def _side_redis(settings: Settings) -> redis.Redis[bytes]:
    """A client for the small bookkeeping beside the queues: short timeouts, so Redis trouble never hangs a task."""
    return redis.Redis.from_url(settings.redis_url, socket_timeout=3.0, socket_connect_timeout=3.0)
