"""Leases and delivery counts against a real redis-server; the settings that go with them."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import redis

from worker.errors import SettingsError
from worker.queues import DELIVERIES_KEY
from worker.redelivery.deliveries import Delivery, DeliveryCounter, split_task_ids
from worker.redelivery.lease import held_tags, renew, renewal_interval_s
from worker.settings import load_settings


@pytest.fixture()
def client(redis_url: str) -> redis.Redis[bytes]:
    return redis.Redis.from_url(redis_url)


def test_renewal_re_scores_held_tags_and_never_adds_one(client: redis.Redis[bytes]) -> None:
    index = f"test-index-{uuid.uuid4().hex}"
    client.zadd(index, {"held": 100.0, "other": 100.0})
    renewed = renew(client, index, ["held", "acked-meanwhile"], now=5000.0)
    assert renewed == 1
    assert client.zscore(index, "held") == 5000.0
    assert client.zscore(index, "other") == 100.0, "tags of other workers are left alone"
    assert client.zscore(index, "acked-meanwhile") is None, "an acknowledged tag is not resurrected"


def test_held_tags_are_the_delivered_ones_not_yet_acknowledged() -> None:
    qos = SimpleNamespace(_delivered=OrderedDict.fromkeys(["a", "b", "c"]), _dirty={"b"})
    assert held_tags(SimpleNamespace(qos=qos)) == ["a", "c"]
    assert held_tags(SimpleNamespace(qos=None)) == []


def test_a_lease_is_renewed_three_times_per_visibility_timeout() -> None:
    assert renewal_interval_s(60) == 20


def test_a_first_delivery_costs_no_round_trip_and_a_retry_starts_a_new_count(client: redis.Redis[bytes]) -> None:
    counter = DeliveryCounter(client, ttl_s=600)
    task_id = uuid.uuid4().hex
    assert counter.count(Delivery(task_id, 0, redelivered=False)) == 1
    assert client.exists(f"{DELIVERIES_KEY}{task_id}:0") == 0
    assert [counter.count(Delivery(task_id, 0, redelivered=True)) for _ in range(3)] == [2, 3, 4]
    assert 0 < client.ttl(f"{DELIVERIES_KEY}{task_id}:0") <= 600
    assert counter.count(Delivery(task_id, 1, redelivered=True)) == 2, "retry 1 is another message"


def test_counting_fails_open_when_redis_is_unreachable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)
    assert DeliveryCounter(dead, ttl_s=60).count(Delivery("t", 0, redelivered=True)) == 1


def test_a_batch_split_twice_gives_the_same_task_ids() -> None:
    first = split_task_ids("batch-1", 0, [{}, {}, {}])
    assert first == split_task_ids("batch-1", 0, [{}, {}, {}])
    assert len(set(first)) == 3 and first != split_task_ids("batch-1", 1, [{}, {}, {}])


def test_defaults_recover_within_a_minute_and_allow_long_countdowns() -> None:
    settings = load_settings(retry_backoff_max_s=300)
    assert settings.visibility_timeout_s == 60 and settings.max_deliveries == 3
    with pytest.raises(SettingsError, match="LLAVAGUARD_MAX_DELIVERIES"):
        load_settings(max_deliveries=0)
    with pytest.raises(SettingsError, match="LLAVAGUARD_RETRY_BACKOFF_MAX_S"):
        load_settings(retry_backoff_max_s=24 * 3600)
