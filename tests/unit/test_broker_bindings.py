"""Issue 9: priority lists keep their `realtime:3` names while kombu's binding tables use kombu's separator.

Against a real redis-server: the app's own transport publishes, counts and consumes on the priority lists, and
a plain kombu client (no transport options, as Flower and `celery inspect` have) reads the tables it wrote.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from worker.broker.bindings import KOMBU_SEP, migrate_legacy_members, parse_member
from worker.broker.transport import GuardedChannel
from worker.celery_app import create_app
from worker.queues import PRIORITY_STEPS, REALTIME_QUEUE
from worker.settings import load_settings


@pytest.fixture()
def db_url(redis_url: str) -> Iterator[str]:
    """The session's redis-server, database 5 emptied before and after (the transport writes fixed key names)."""
    url = redis_url.rsplit("/", 1)[0] + "/5"
    client = redis.Redis.from_url(url)
    client.flushdb()
    GuardedChannel._bindings_migrated.clear()  # once per process and broker: let each test's first channel do it
    yield url
    client.flushdb()
    client.close()


def app_connection(url: str, *, worker: bool = False) -> Any:
    os.environ["LLAVAGUARD_REDIS_URL"] = url
    try:
        app = create_app(load_settings())
    finally:
        del os.environ["LLAVAGUARD_REDIS_URL"]
    if worker:  # as `llavaguard worker` sets it
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, "migrate_legacy_bindings": True}
    return app.connection_for_write()


def test_members_of_either_separator_are_read_and_garbage_is_not() -> None:
    assert parse_member(f"realtime{KOMBU_SEP}{KOMBU_SEP}realtime") == ("realtime", "", "realtime")
    assert parse_member("realtime::realtime") == ("realtime", "", "realtime")
    assert parse_member("::w1@h.celery.pidbox") == ("", "", "w1@h.celery.pidbox")
    assert parse_member("only-one-field") is None
    assert parse_member("a:b:c:d") is None


def test_old_members_are_rewritten_and_unreadable_ones_dropped(db_url: str) -> None:
    r = redis.Redis.from_url(db_url, decode_responses=True)
    r.sadd("_kombu.binding.realtime", "realtime::realtime", f"realtime{KOMBU_SEP}{KOMBU_SEP}realtime")
    r.sadd("_kombu.binding.celery.pidbox", "::w1@h.celery.pidbox", "junk")
    r.sadd("_kombu.binding_permanent.realtime", "realtime::realtime")
    r.set("_kombu.binding.not-a-set", "left alone")
    assert migrate_legacy_members(r) == 4
    assert r.smembers("_kombu.binding.realtime") == {f"realtime{KOMBU_SEP}{KOMBU_SEP}realtime"}
    assert r.smembers("_kombu.binding.celery.pidbox") == {f"{KOMBU_SEP}{KOMBU_SEP}w1@h.celery.pidbox"}
    assert r.smembers("_kombu.binding_permanent.realtime") == {f"realtime{KOMBU_SEP}{KOMBU_SEP}realtime"}
    assert r.get("_kombu.binding.not-a-set") == "left alone"
    assert migrate_legacy_members(r) == 0


def test_priority_lists_keep_their_names_and_bindings_use_kombus_separator(db_url: str) -> None:
    r = redis.Redis.from_url(db_url)
    queue = Queue(REALTIME_QUEUE, Exchange(REALTIME_QUEUE, "direct"), REALTIME_QUEUE)
    with app_connection(db_url) as conn:
        channel = conn.default_channel
        assert channel.sep == KOMBU_SEP
        assert [channel._q_for_pri(REALTIME_QUEUE, p) for p in PRIORITY_STEPS] == [
            "realtime", "realtime:3", "realtime:6", "realtime:9"]
        producer = Producer(channel)
        for priority in (0, 3, 6, 9):
            producer.publish({"p": priority}, exchange=queue.exchange, routing_key=REALTIME_QUEUE,
                             declare=[queue], priority=priority, serializer="json")
        assert {k: r.llen(k) for k in (b"realtime", b"realtime:3", b"realtime:6", b"realtime:9")} == dict.fromkeys(
            (b"realtime", b"realtime:3", b"realtime:6", b"realtime:9"), 1)
        assert not [k for k in r.keys("realtime*") if KOMBU_SEP.encode() in k]
        assert queue(channel).queue_declare(passive=True).message_count == 4  # kombu's _size, same lists
        # Consumed by polling (`_get`), highest priority (step 0) first; a reply queue, which carries no tasks.
        replies = Queue("t.reply.celery.pidbox", Exchange("reply.celery.pidbox", "direct"), "t")
        for priority in (9, 3, 0, 6):
            producer.publish({"p": priority}, exchange=replies.exchange, routing_key="t", declare=[replies],
                             priority=priority, serializer="json")
        assert r.llen("t.reply.celery.pidbox:9") == 1
        assert [replies(channel).get(no_ack=True).payload["p"] for _ in range(4)] == [0, 3, 6, 9]
    assert r.smembers("_kombu.binding.realtime") == {f"realtime{KOMBU_SEP}{KOMBU_SEP}realtime".encode()}
    with Connection(db_url) as plain:  # what Flower and `celery --broker=...` have: kombu's defaults only
        assert plain.default_channel.get_table(REALTIME_QUEUE) == [("realtime", "", "realtime")]


def test_a_workers_channel_converts_old_members_and_tolerates_new_ones(db_url: str) -> None:
    r = redis.Redis.from_url(db_url, decode_responses=True)
    r.sadd("_kombu.binding.reply.celery.pidbox", "abc::abc.reply.celery.pidbox")
    with app_connection(db_url) as conn:  # a producer's: old workers may still need the old members
        conn.default_channel  # noqa: B018  (connects)
        assert r.smembers("_kombu.binding.reply.celery.pidbox") == {"abc::abc.reply.celery.pidbox"}
    with app_connection(db_url, worker=True) as conn:
        channel = conn.default_channel
        assert r.smembers("_kombu.binding.reply.celery.pidbox") == {f"abc{KOMBU_SEP}{KOMBU_SEP}abc.reply.celery.pidbox"}
        # Written by a worker not yet upgraded, or by nobody who knows the format:
        r.sadd("_kombu.binding.reply.celery.pidbox", "late::late.reply.celery.pidbox", "junk")
        assert sorted(channel.get_table("reply.celery.pidbox")) == [
            ("abc", "", "abc.reply.celery.pidbox"), ("late", "", "late.reply.celery.pidbox")]
