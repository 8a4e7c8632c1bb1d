"""The composition root builds what it promises: one outbox per process, bounded S3 clients, the backend."""

from __future__ import annotations

import contextlib

from worker import composition
from worker.inference.sglang_client import SGLangClient
from worker.s3_clients import STORE_BOUNDS
from worker.settings import load_settings
from worker.stores import MemoryVerdictStore


def test_the_hook_the_courier_and_the_poller_share_one_outbox() -> None:
    settings = load_settings(redis_url="redis://127.0.0.1:1/0", webhook_retention_s=3600)
    hook = composition.webhook_hook(settings)
    courier = composition.webhook_courier(settings)
    poller = composition.webhook_poller(settings, lambda delivery_id, attempt: None)
    assert hook.outbox is courier.outbox is poller.outbox is composition.outbox(settings)
    courier.sender.close()


def test_image_and_store_s3_clients_have_their_own_explicit_bounds() -> None:
    settings = load_settings(fetch_connect_timeout_s=2, fetch_read_timeout_s=7, s3_endpoint_url="http://127.0.0.1:1",
                             s3_region="eu-west-1")
    image, store = composition.s3_client(settings), composition.s3_client(settings, STORE_BOUNDS)
    with contextlib.closing(image), contextlib.closing(store):
        assert (image.meta.config.connect_timeout, image.meta.config.read_timeout) == (2, 7)
        assert image.meta.config.retries["total_max_attempts"] == 4  # the first request and 3 retries
        assert (store.meta.config.connect_timeout, store.meta.config.read_timeout) == (5, 30)
        assert store.meta.config.retries["total_max_attempts"] == 6
        for client in (image, store):
            assert client.meta.config.retries["mode"] == "standard"
            assert client.meta.region_name == "eu-west-1"
            assert client.meta.config.s3 == {"addressing_style": "path"}  # a custom endpoint has no bucket hosts


def test_the_inference_backend_is_sglang_at_the_configured_url() -> None:
    backend = composition.inference_backend(load_settings(sglang_url="http://127.0.0.1:1/"))
    assert isinstance(backend, SGLangClient)
    assert backend.base_url == "http://127.0.0.1:1"
    backend.close()


def test_the_review_step_and_hook_are_built_from_the_review_settings() -> None:
    settings = load_settings(redis_url="redis://127.0.0.1:1/0", review_sample_allow=0.01, review_sample_block=0.5,
                             review_retention_s=120, review_max_retained=7, review_keep_after_label=True)
    step, hook = composition.review_intake(settings), composition.review_hook(settings)
    assert (step.rates.allow, step.rates.block) == (0.01, 0.5)
    assert (step.images.retention_s, step.images.max_items) == (120, 7)
    assert hook.outbox is composition.outbox(settings)
    assert composition.review_desk(settings, store=MemoryVerdictStore()).keep_after_label is True
    for client in (step.images.redis, hook.queue.redis):
        client.close()
