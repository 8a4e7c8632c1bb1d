"""The webhook outbox state machine and one attempt's story, against a real Redis and real HTTP receivers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from tests.webhook_receiver import WebhookReceiver, always, fail_first
from worker import composition
from worker.notify.delivery import Courier
from worker.notify.events import UNSAFE, Target
from worker.notify.outbox import DEAD_KEY, DUE_KEY, AttemptRecord, Outbox
from worker.notify.poller import Poller
from worker.notify.schedule import RetrySchedule
from worker.notify.signing import new_secret
from worker.settings import load_settings

SECRET = new_secret()
BODY = '{"type":"moderation.unsafe","timestamp":"2025-01-01T00:00:00Z","data":{"id":"m1"}}'
LEASE_S = 30.0


@pytest.fixture()
def outbox(fresh_redis: str) -> Iterator[Outbox]:
    box = Outbox.from_url(fresh_redis, retention_s=3600)
    yield box
    box.close()


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def courier(outbox: Outbox, schedule: list[float], **settings: str) -> Courier:
    loaded = load_settings(webhook_secret=SECRET, webhook_timeout_s="3", **settings)
    return Courier(outbox, composition.webhook_sender(loaded), RetrySchedule.of(schedule))


def add(outbox: Outbox, msg_id: str, url: str, *, now: float, trusted: bool = True) -> None:
    assert outbox.enqueue(msg_id, UNSAFE, Target(url, trusted), "m1", BODY, now=now)


def record(number: int, now: float) -> AttemptRecord:
    return AttemptRecord(number=number, at=now, status=503, latency_ms=1.0, error="HTTP 503", outcome="retry")


def test_enqueue_is_idempotent(outbox: Outbox) -> None:
    now = time.time()
    add(outbox, "msg_a", "https://x.example/h", now=now)
    assert not outbox.enqueue("msg_a", UNSAFE, Target("https://x.example/h", True), "m1", BODY, now=now + 5)
    assert outbox.redis.zcard(DUE_KEY) == 1
    assert outbox.claim(now=now, lease_until=now + LEASE_S, limit=10) == [("msg_a", 0)]


def test_a_claim_is_exclusive_until_its_lease_expires(outbox: Outbox) -> None:
    now = time.time()
    add(outbox, "msg_a", "https://x.example/h", now=now)
    assert outbox.claim(now=now, lease_until=now + LEASE_S, limit=10) == [("msg_a", 0)]
    assert outbox.claim(now=now + 1, lease_until=now + 1 + LEASE_S, limit=10) == []
    later = now + LEASE_S + 1  # the worker that had it died: it comes back, same attempt
    assert outbox.claim(now=later, lease_until=later + LEASE_S, limit=10) == [("msg_a", 0)]


def test_only_one_task_may_start_an_attempt(outbox: Outbox) -> None:
    now = time.time()
    add(outbox, "msg_a", "https://x.example/h", now=now)
    outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
    assert outbox.start("msg_a", 1, now=now, lease_until=now + LEASE_S) is None  # wrong attempt
    started = outbox.start("msg_a", 0, now=now, lease_until=now + LEASE_S)
    assert started is not None and started.state == "sending" and started.body == BODY
    assert outbox.start("msg_a", 0, now=now, lease_until=now + LEASE_S) is None  # redelivered duplicate
    # The sender died mid-attempt: after its lease the delivery is claimed and started again.
    later = now + LEASE_S + 1
    assert outbox.claim(now=later, lease_until=later + LEASE_S, limit=10) == [("msg_a", 0)]
    assert outbox.start("msg_a", 0, now=later, lease_until=later + LEASE_S) is not None


def test_a_retry_waits_in_the_schedule_and_a_stale_finish_changes_nothing(outbox: Outbox) -> None:
    now = time.time()
    add(outbox, "msg_a", "https://x.example/h", now=now)
    outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
    delivery = outbox.start("msg_a", 0, now=now, lease_until=now + LEASE_S)
    assert delivery is not None
    assert outbox.finish(delivery, record(1, now), "retry", next_at=now + 100)
    assert not outbox.finish(delivery, record(1, now), "delivered", next_at=None)  # same attempt again
    stored = outbox.get("msg_a")
    assert stored is not None and stored.state == "pending" and stored.attempt_count == 1
    assert stored.last_status == 503 and stored.next_attempt_at == pytest.approx(now + 100)
    assert outbox.claim(now=now + 50, lease_until=now + 50 + LEASE_S, limit=10) == []
    assert outbox.claim(now=now + 101, lease_until=now + 101 + LEASE_S, limit=10) == [("msg_a", 1)]
    assert len(outbox.attempts("msg_a")) == 2  # both finishes were recorded, one of them changed state


def test_dead_letters_can_be_replayed_once(outbox: Outbox) -> None:
    now = time.time()
    add(outbox, "msg_a", "https://x.example/h", now=now)
    outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
    delivery = outbox.start("msg_a", 0, now=now, lease_until=now + LEASE_S)
    assert delivery is not None and outbox.finish(delivery, record(1, now), "dead", next_at=None)
    assert [d.id for d in outbox.recent(limit=10, failed=True)] == ["msg_a"]
    assert outbox.redis.ttl("llavaguard:webhooks:delivery:msg_a") > 0
    assert outbox.replay("msg_a", now=now) == "replayed"
    assert outbox.replay("msg_a", now=now) == "pending"
    assert outbox.replay("msg_nope", now=now) == "missing"
    replayed = outbox.get("msg_a")
    assert replayed is not None and replayed.round_attempt == 1 and replayed.attempt_count == 1
    assert outbox.redis.zcard(DEAD_KEY) == 0 and outbox.redis.ttl("llavaguard:webhooks:delivery:msg_a") == -1


def test_a_busy_worker_releases_a_claim_back_to_the_schedule(outbox: Outbox) -> None:
    now = time.time()
    add(outbox, "msg_a", "https://x.example/h", now=now)
    outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
    assert outbox.release("msg_a", 0, due_at=now + 3)
    assert outbox.claim(now=now + 1, lease_until=now + LEASE_S, limit=10) == []
    assert outbox.claim(now=now + 4, lease_until=now + LEASE_S, limit=10) == [("msg_a", 0)]


def test_the_poller_dispatches_each_due_delivery_once(outbox: Outbox) -> None:
    now = time.time()
    for n in range(250):
        add(outbox, f"msg_{n}", "https://x.example/h", now=now)
    sent: list[tuple[str, int]] = []
    poller = Poller(outbox, lambda i, a: sent.append((i, a)), interval_s=1, lease_s=LEASE_S)
    assert poller.poll_once() == 250 and poller.poll_once() == 0
    assert sorted(sent) == sorted((f"msg_{n}", 0) for n in range(250))


def test_a_poller_sending_itself_claims_no_more_than_its_threads_have_room_for(outbox: Outbox) -> None:
    """Issue 15: the poller hands claims to its own SenderPool; what it has no room for stays due in Redis
    for another worker's poller, instead of being claimed and given back."""
    now = time.time()
    for n in range(5):
        add(outbox, f"msg_{n}", "https://x.example/h", now=now)
    sent: list[tuple[str, int]] = []
    room = [3]
    poller = Poller(outbox, lambda i, a: sent.append((i, a)), interval_s=1, lease_s=LEASE_S,
                    capacity=lambda: room[0] - len(sent))
    assert poller.poll_once() == 3 and len(sent) == 3
    assert poller.poll_once() == 0
    assert outbox.redis.zcard(DUE_KEY) == 2
    room[0] = 10
    assert poller.poll_once() == 2
    assert sorted(sent) == sorted((f"msg_{n}", 0) for n in range(5))


def test_an_attempt_signs_retries_and_then_delivers(outbox: Outbox, receiver: WebhookReceiver) -> None:
    receiver.respond = fail_first(1, 503)
    receiver.answer_headers = {"Retry-After": "0"}
    sending = courier(outbox, [0.2])
    now = time.time()
    add(outbox, "msg_a", receiver.url(), now=now)
    for attempt in range(2):
        claimed = outbox.claim(now=now + 10 * attempt, lease_until=now + LEASE_S, limit=10)
        assert claimed == [("msg_a", attempt)]
        sending.attempt("msg_a", attempt)
    requests = receiver.requests_for("msg_a")
    assert [r.status for r in requests] == [503, 200]
    for request in requests:
        assert Webhook(SECRET).verify(request.body, request.headers) == {"type": "moderation.unsafe",
                                                                         "timestamp": "2025-01-01T00:00:00Z",
                                                                         "data": {"id": "m1"}}
    stored = outbox.get("msg_a")
    assert stored is not None and stored.state == "delivered" and stored.attempt_count == 2
    attempts = outbox.attempts("msg_a")
    assert [(a["number"], a["status"], a["outcome"]) for a in attempts] == [(1, 503, "retry"), (2, 200, "delivered")]
    assert all(a["latency_ms"] >= 0 and a["at"] >= now for a in attempts)


def test_redirects_are_failures_and_never_followed(outbox: Outbox, receiver: WebhookReceiver) -> None:
    target = WebhookReceiver()
    try:
        receiver.respond = always(302)
        receiver.answer_headers = {"Location": target.url()}
        now = time.time()
        add(outbox, "msg_a", receiver.url(), now=now)
        outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
        courier(outbox, [60]).attempt("msg_a", 0)
        stored = outbox.get("msg_a")
        assert stored is not None and stored.state == "pending" and stored.last_status == 302
        assert target.connections == 0
    finally:
        target.close()


def test_the_last_failure_dead_letters(outbox: Outbox, receiver: WebhookReceiver) -> None:
    receiver.respond = always(500)
    sending = courier(outbox, [0.01])
    now = time.time()
    add(outbox, "msg_a", receiver.url(), now=now)
    for attempt in range(2):
        outbox.claim(now=now + 10 * attempt, lease_until=now + LEASE_S, limit=10)
        sending.attempt("msg_a", attempt)
    stored = outbox.get("msg_a")
    assert stored is not None and stored.state == "dead" and stored.attempt_count == 2
    assert len(receiver.snapshot()) == 2


def test_a_410_disables_the_endpoint_for_every_later_delivery(outbox: Outbox, receiver: WebhookReceiver) -> None:
    receiver.respond = always(410)
    sending = courier(outbox, [0.01])
    now = time.time()
    for n in range(2):
        add(outbox, f"msg_{n}", receiver.url(), now=now)
    outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
    sending.attempt("msg_0", 0)
    sending.attempt("msg_1", 0)
    assert len(receiver.snapshot()) == 1 and outbox.is_disabled(receiver.url())
    states = {(d.id, d.state, d.attempt_count) for d in outbox.recent(limit=10, failed=True)}
    assert states == {("msg_0", "dead", 1), ("msg_1", "dead", 1)}
    assert outbox.enable(receiver.url()) and not outbox.is_disabled(receiver.url())


def test_retry_after_pushes_the_next_attempt_out(outbox: Outbox, receiver: WebhookReceiver) -> None:
    receiver.respond = always(429)
    receiver.answer_headers = {"Retry-After": "120"}
    now = time.time()
    add(outbox, "msg_a", receiver.url(), now=now)
    outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
    courier(outbox, [1, 300]).attempt("msg_a", 0)
    stored = outbox.get("msg_a")
    assert stored is not None and stored.state == "pending" and stored.last_status == 429
    assert stored.next_attempt_at is not None and stored.next_attempt_at - now >= 119


def test_nothing_is_sent_unsigned(outbox: Outbox, receiver: WebhookReceiver) -> None:
    unsigned = Courier(outbox, composition.webhook_sender(load_settings()), RetrySchedule.of([1]))
    now = time.time()
    add(outbox, "msg_a", receiver.url(), now=now, trusted=False)
    outbox.claim(now=now, lease_until=now + LEASE_S, limit=10)
    unsigned.attempt("msg_a", 0)
    stored = outbox.get("msg_a")
    assert stored is not None and stored.state == "dead" and "WEBHOOK_SECRET" in (stored.last_error or "")
    assert receiver.connections == 0
