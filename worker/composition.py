"""Composition root: builds the pipeline's parts from settings. Nothing else reads settings into objects."""

from __future__ import annotations

from typing import Any

import boto3
import redis
from botocore.config import Config

from worker.broker.deadletter import DeadLetterList
from worker.inference.llavaguard import LlavaGuardJudge
from worker.inference.sglang_client import SGLangClient
from worker.intake import Intake
from worker.notify.hook import webhook_hook
from worker.observability.metrics import count_verdict
from worker.pipeline import Moderator
from worker.policy import PolicyRegistry
from worker.settings import Settings
from worker.stores import open_store


def s3_client(settings: Settings) -> Any:
    """An S3 client for image fetches, bounded like the HTTP fetcher (botocore's defaults wait 60 s per read)."""
    config = Config(
        connect_timeout=settings.fetch_connect_timeout_s, read_timeout=settings.fetch_read_timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config)


def build_moderator(settings: Settings) -> Moderator:
    backend = SGLangClient(
        settings.sglang_url, api_key=settings.sglang_api_key,
        timeout_s=settings.inference_timeout_s, inflight_window=settings.inflight_window,
    )
    judge = LlavaGuardJudge(
        backend, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
        max_tokens=settings.max_tokens,
        constrained=settings.constrained_decoding, max_parse_attempts=settings.max_parse_attempts,
    )
    store = open_store(
        settings.store_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
    )
    return Moderator(
        policies=PolicyRegistry(settings.policy_dir),
        intake=Intake.from_settings(settings, s3_client(settings)),
        judge=judge,
        store=store,
        hooks=[count_verdict, webhook_hook(settings)],  # count first: a webhook hook may raise and retry
    )


def dead_letter_list(settings: Settings) -> DeadLetterList:
    """The dead-letter list (issue 8, item 1) for batch items and the `llavaguard deadletter` command."""
    return DeadLetterList(redis.Redis.from_url(settings.redis_url), settings.deadletter_max_entries)
