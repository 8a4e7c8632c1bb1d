"""Webhooks end to end: real worker processes, the stand-in, real HTTP receivers on loopback.

The four promises: a flaky receiver gets exactly one accepted, signed delivery per unsafe verdict under one
stable webhook-id; SIGKILL loses no delivery; 410 disables the endpoint; a hanging receiver does not hold
up moderation. Plus: no duplicate when a retry is scheduled past the visibility timeout, and callbacks
pass the SSRF guard at send time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from tests.webhook_receiver import WebhookReceiver, always, fail_first, hang, slow, wait_until
from worker.models import Verdict
from worker.notify.events import COMPLETED, FAILED, UNSAFE, delivery_id
from worker.notify.outbox import DEAD_KEY, Outbox
from worker.notify.signing import new_secret
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

ALL_QUEUES = "realtime,bulk,webhooks"
OLD_SECRET, NEW_SECRET = new_secret(), new_secret()


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def hook_settings(redis_url: str, sglang_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "redis_url": redis_url, "sglang_url": sglang_url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "retry_backoff_base_s": "0.2", "retry_backoff_max_s": "1", "webhook_secret": f"{OLD_SECRET},{NEW_SECRET}",
        "webhook_poll_interval_s": "0.1", "webhook_retry_schedule_s": "0.2,0.5,1,2", **extra,
    }


def moderate(settings: dict[str, str], images: list[bytes], **submit: Any) -> list[Verdict]:
    with ModerationClient(settings=load_settings(**settings)) as client:
        ids = [client.submit(image, **submit) for image in images]
        return [client.wait(moderation_id, timeout=90) for moderation_id in ids]


def unsafe_ids(verdicts: list[Verdict], url: str) -> set[str]:
    return {delivery_id(v.id, UNSAFE, url) for v in verdicts if v.rating == "Unsafe"}


def open_outbox(settings: dict[str, str]) -> Outbox:
    return Outbox.from_url(settings["redis_url"], retention_s=3600)


def states(outbox: Outbox, ids: set[str]) -> dict[str, str | None]:
    return {i: (d.state if (d := outbox.get(i)) else None) for i in ids}


def cli(settings: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "producers.cli", "webhooks", *args], env=worker_env(**settings),
                          capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_flaky_receiver_gets_each_unsafe_verdict_once_signed_under_one_id(
    pool: str, fresh_redis: str, standin: SGLangStandIn, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.respond = fail_first(2, 503)
    settings = hook_settings(fresh_redis, standin.url, tmp_path, webhook_url=receiver.url())
    codes = ["O1", "NA", "O2", "O6", "NA", "O9", "O3", "O4"]
    with running_workers(worker_env(**settings), tmp_path, count=2, concurrency=4, queues=ALL_QUEUES, pool=pool):
        verdicts = moderate(settings, [make_image(code) for code in codes])
        expected = unsafe_ids(verdicts, receiver.url())
        wait_until(lambda: set(receiver.accepted()) == expected, 60, "every unsafe verdict accepted")
        time.sleep(1)  # room for a (wrong) extra delivery to show up

    assert len(expected) == 6
    assert receiver.accepted() == {msg_id: 1 for msg_id in expected}
    verdict_json = {v.id: v.model_dump(mode="json") for v in verdicts}
    for msg_id in expected:
        attempts = receiver.requests_for(msg_id)
        assert [r.status for r in attempts] == [503, 503, 200]
        assert len({r.body for r in attempts}) == 1  # the same bytes every time
        for request in attempts:
            for secret in (OLD_SECRET, NEW_SECRET):  # both secrets of a rotation verify
                event = Webhook(secret).verify(request.body, request.headers)
            assert event["type"] == UNSAFE and event["data"] == verdict_json[event["data"]["id"]]
    outbox = open_outbox(settings)
    try:
        assert set(states(outbox, expected).values()) == {"delivered"}
        records = outbox.attempts(next(iter(expected)))
        assert [(r["status"], r["outcome"]) for r in records] == [(503, "retry"), (503, "retry"), (200, "delivered")]
    finally:
        outbox.close()
    listed = cli(settings, "list")
    assert {d["id"] for d in listed} == expected and all(len(d["attempts"]) == 3 for d in listed)


def test_a_retry_later_than_the_visibility_timeout_runs_once(
    fresh_redis: str, standin: SGLangStandIn, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """A Celery countdown of 8 s with a 5 s visibility timeout would be redelivered: 3 attempts, not 2."""
    receiver.respond = fail_first(1, 503)
    settings = hook_settings(fresh_redis, standin.url, tmp_path, webhook_url=receiver.url(),
                             visibility_timeout_s="5", webhook_retry_schedule_s="8")
    with running_workers(worker_env(**settings), tmp_path, count=2, concurrency=2, queues=ALL_QUEUES):
        (verdict,) = moderate(settings, [make_image("O2")])
        (msg_id,) = unsafe_ids([verdict], receiver.url())
        wait_until(lambda: receiver.accepted()[msg_id] == 1, 60, "the second attempt")
        time.sleep(6)  # longer than the visibility timeout plus kombu's restore interval
        assert [r.status for r in receiver.requests_for(msg_id)] == [503, 200]
    outbox = open_outbox(settings)
    try:
        assert len(outbox.attempts(msg_id)) == 2
    finally:
        outbox.close()


def test_a_worker_killed_mid_delivery_loses_no_webhook(
    fresh_redis: str, standin: SGLangStandIn, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.respond = slow(1.0)
    settings = hook_settings(fresh_redis, standin.url, tmp_path, webhook_url=receiver.url(),
                             visibility_timeout_s="5", webhook_timeout_s="3", webhook_concurrency="4")
    env = worker_env(**settings)
    with running_workers(env, tmp_path / "a", count=1, concurrency=4, queues=ALL_QUEUES) as (victim,):
        verdicts = moderate(settings, [make_image("O1")] * 12)
        wait_until(lambda: len(receiver.snapshot()) >= 2, 30, "deliveries in flight")
        victim.kill()
    expected = unsafe_ids(verdicts, receiver.url())
    assert len(expected) == 12 and len(receiver.accepted()) < 12
    outbox = open_outbox(settings)
    try:
        with running_workers(env, tmp_path / "b", count=1, concurrency=4, queues=ALL_QUEUES):
            # The killed worker's attempts come back when their lease expires and are sent again.
            wait_until(lambda: set(states(outbox, expected).values()) == {"delivered"}, 90, "every delivery")
        assert set(receiver.accepted()) == expected
        assert outbox.redis.zcard(DEAD_KEY) == 0
    finally:
        outbox.close()
    for request in receiver.snapshot():  # duplicates (at least once) only ever repeat a webhook-id
        Webhook(NEW_SECRET).verify(request.body, request.headers)


def test_410_disables_the_endpoint_until_enabled_and_dead_letters_can_be_replayed(
    fresh_redis: str, standin: SGLangStandIn, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.respond = always(410)
    settings = hook_settings(fresh_redis, standin.url, tmp_path, webhook_url=receiver.url())
    outbox = open_outbox(settings)
    try:
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4, queues=ALL_QUEUES):
            first = unsafe_ids(moderate(settings, [make_image("O3")]), receiver.url())
            wait_until(lambda: set(states(outbox, first).values()) == {"dead"}, 30, "the 410 to dead-letter")
            later = unsafe_ids(moderate(settings, [make_image("O4"), make_image("O5")]), receiver.url())
            wait_until(lambda: set(states(outbox, later).values()) == {"dead"}, 30, "later deliveries refused")
            assert len(receiver.snapshot()) == 1  # nothing sent to a disabled endpoint

            failed = cli(settings, "list", "--failed")
            assert {d["id"] for d in failed} == first | later
            assert all("410" in d["last_error"] for d in failed)
            assert [d["url"] for d in cli(settings, "list", "--disabled")] == [receiver.url()]

            receiver.respond = always(200)
            assert cli(settings, "enable", receiver.url())[0]["was_disabled"] is True
            replayed = sorted(later)[0]
            assert cli(settings, "replay", replayed)[0]["replayed"] is True
            wait_until(lambda: receiver.accepted()[replayed] == 1, 30, "the replayed delivery")
        assert len(receiver.snapshot()) == 2
        delivery = outbox.get(replayed)
        assert delivery is not None and delivery.state == "delivered" and delivery.attempt_count == 2
    finally:
        outbox.close()


def test_callbacks_pass_the_address_guard_and_optional_events_go_out(
    fresh_redis: str, standin: SGLangStandIn, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    canary = WebhookReceiver("127.0.0.2")  # loopback, but outside the allowed 127.0.0.1/32
    callback = WebhookReceiver()
    settings = hook_settings(
        fresh_redis, standin.url, tmp_path, webhook_url=receiver.url(), allowed_networks="127.0.0.1/32",
        allow_http="true", webhook_events=f"{COMPLETED},{FAILED}",
    )
    outbox = open_outbox(settings)
    try:
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4, queues=ALL_QUEUES):
            (good,) = moderate(settings, [make_image("O2")], callback_url=callback.url("/cb"))
            (bad,) = moderate(settings, [make_image("O2")], callback_url=canary.url("/cb"))
            safe, failed = moderate(settings, [make_image("NA"), b"not an image"])
            refused = {delivery_id(bad.id, event, canary.url("/cb")) for event in (UNSAFE, COMPLETED)}
            wait_until(lambda: set(states(outbox, refused).values()) == {"dead"}, 30, "refused callbacks")
            wait_until(lambda: len(receiver.accepted()) == 6 and len(callback.accepted()) == 2, 30, "events")
    finally:
        canary.close()
        callback.close()
    assert canary.connections == 0
    for msg_id in refused:
        delivery = outbox.get(msg_id)
        assert delivery is not None and delivery.attempt_count == 1
        assert delivery.last_error is not None and "fetch_address_refused" in delivery.last_error
    outbox.close()
    events = sorted((json.loads(r.body)["data"]["id"], json.loads(r.body)["type"]) for r in receiver.snapshot())
    assert events == sorted([(good.id, UNSAFE), (good.id, COMPLETED), (bad.id, UNSAFE), (bad.id, COMPLETED),
                             (safe.id, COMPLETED), (failed.id, FAILED)])
    assert failed.status == "failed"
    assert {json.loads(r.body)["type"] for r in callback.snapshot()} == {UNSAFE, COMPLETED}


def test_a_hanging_receiver_does_not_hold_up_moderation(
    fresh_redis: str, standin: SGLangStandIn, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """Two Celery threads and two webhook threads. Images are submitted one after another, so deliveries
    are dispatched while moderation goes on: were webhooks sent on Celery threads, the first two hung
    requests would stop moderation for the whole (60 s) webhook timeout."""
    receiver.respond = hang
    settings = hook_settings(fresh_redis, standin.url, tmp_path, webhook_url=receiver.url(),
                             webhook_timeout_s="60", webhook_concurrency="2")
    count = 16
    with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=2, queues=ALL_QUEUES):
        with ModerationClient(settings=load_settings(**settings)) as client:
            verdicts = [client.wait(client.submit(make_image("O7")), timeout=30) for _ in range(count)]
        wait_until(lambda: len(receiver.snapshot()) == 2, 30, "both webhook threads hung")
        outbox = open_outbox(settings)
        try:
            ids = unsafe_ids(verdicts, receiver.url())
            waiting = [s for s in states(outbox, ids).values() if s != "sending"]
        finally:
            outbox.close()
        hung = len(receiver.snapshot())
        receiver.release()  # let the worker shut down without waiting out the hung requests
    assert all(v.rating == "Unsafe" for v in verdicts) and len(ids) == count
    assert hung == 2 and len(waiting) == count - 2  # the rest wait in the outbox, untried, not lost
