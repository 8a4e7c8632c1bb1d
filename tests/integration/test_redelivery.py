"""Work held by a worker that dies is judged by another soon; work held by a living worker is never run twice;
a message that keeps killing its workers ends `worker_lost` (issue 8, items 2 and 3).

Real services throughout: a private redis-server with a password, real `llavaguard worker` processes killed
with SIGKILL, SQLite, and the SGLang stand-in with latency, recording which image every model request carried.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers import ModerationClient
from producers.client import Submission
from tests.harness import worker_env
from tests.redelivery_support import Fleet, RecordingStandIn, sized_image
from tests.services import redis_server
from worker.models import Verdict
from worker.settings import load_settings

REDIS_PASSWORD = "redelivery-test-pw"  # a throwaway password for a private loopback redis-server


@pytest.fixture()
def redis_with_password(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis", password=REDIS_PASSWORD) as url:
        yield url


def worker_settings(redis_url: str, sglang_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"redis_url": redis_url, "sglang_url": sglang_url, "store_url": f"sqlite:///{tmp_path}/v.db", **extra}


def wait_for_verdicts(client: ModerationClient, ids: list[str], timeout_s: float) -> dict[str, Verdict]:
    deadline = time.monotonic() + timeout_s
    found: dict[str, Verdict] = {}
    while time.monotonic() < deadline:
        found = client.get_many(ids)
        if len(found) == len(ids):
            return found
        time.sleep(0.5)
    raise AssertionError(f"{len(ids) - len(found)} of {len(ids)} moderations unjudged after {timeout_s} s")


def wait_until_judged(client: ModerationClient, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while client.store.count() < count:
        assert time.monotonic() < deadline, f"fewer than {count} verdicts within {timeout_s} s"
        time.sleep(0.2)


def assert_none_judged_after_its_verdict(standin: RecordingStandIn, numbers: dict[str, int],
                                         verdicts: dict[str, Verdict]) -> None:
    for moderation_id, number in numbers.items():
        stored_at = verdicts[moderation_id].completed_at.timestamp()
        late = [at for at in standin.request_times(number) if at > stored_at]
        assert not late, f"image {number} was sent to the model {len(late)} time(s) after its verdict was stored"


@pytest.mark.timeout(420)
def test_sigkill_of_workers_during_400_moderations_loses_and_duplicates_nothing(
    redis_with_password: str, tmp_path: Path
) -> None:
    """Default visibility settings: 7 workers SIGKILLed in three rounds, the last round killing every worker
    at once; everything they held is judged within 90 s of that kill, and all 400 within 3 minutes."""
    count = 400
    with RecordingStandIn("127.0.0.1", 0, max_running=64, service_time_s=1.0) as standin:
        settings = worker_settings(redis_with_password, standin.url, tmp_path)
        broker = redis.Redis.from_url(redis_with_password)
        with Fleet(worker_env(**settings), tmp_path / "workers", concurrency=8) as fleet, \
                ModerationClient(settings=load_settings(**settings)) as client:
            fleet.start(3)
            numbers = {client.submit(sized_image(n)): n for n in range(count)}
            running_at_kills = []
            for judged in (80, 160):  # replacements first, then SIGKILL two workers that hold work
                wait_until_judged(client, judged)
                victims = fleet.alive()[:2]
                fleet.start(2)
                running_at_kills.append(standin.stats()["running"])
                fleet.kill(victims)
            wait_until_judged(client, 240)
            running_at_kills.append(standin.stats()["running"])
            fleet.kill_all()
            killed_at = time.time()
            held_by_the_dead = broker.hlen("unacked")
            assert held_by_the_dead > 0, "the last workers killed held unacknowledged messages"
            fleet.start(3)
            verdicts = wait_for_verdicts(client, list(numbers), timeout_s=150)
            assert client.store.count() == count
    assert all(v.status == "completed" for v in verdicts.values())
    last = max(v.completed_at.timestamp() for v in verdicts.values())
    assert last - killed_at <= 90, f"the dead workers' messages took {last - killed_at:.0f} s to be judged"
    print(f"{held_by_the_dead} messages held by the dead; all judged {last - killed_at:.0f} s after the kill")
    slowest = max((v.completed_at - v.created_at).total_seconds() for v in verdicts.values())
    assert slowest <= 180, f"a moderation took {slowest:.0f} s from submission to verdict"
    assert_none_judged_after_its_verdict(standin, numbers, verdicts)
    per_image = standin.requests_per_image()
    assert set(per_image) == set(range(count))
    extra = sum(per_image.values()) - count
    assert extra <= sum(running_at_kills), "only requests cut off by a kill are ever sent twice"


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_task_running_longer_than_the_visibility_timeout_is_not_redelivered(
    redis_with_password: str, tmp_path: Path, pool: str
) -> None:
    """Visibility 6 s, every model call 20 s: singles and a bulk batch each reach the model exactly once
    (under prefork the children run them and the main process, which holds the messages, renews them)."""
    with RecordingStandIn("127.0.0.1", 0, max_running=32, service_time_s=20.0) as slow:
        settings = worker_settings(redis_with_password, slow.url, tmp_path, visibility_timeout_s="6",
                                   retry_backoff_max_s="1")
        with Fleet(worker_env(**settings), tmp_path / "workers", concurrency=4, pool=pool) as fleet, \
                ModerationClient(settings=load_settings(**settings)) as client, \
                ModerationClient(settings=load_settings(**settings), queue="bulk") as bulk:
            fleet.start(2)  # an idle second worker would take any redelivered message
            singles = [client.submit(sized_image(n)) for n in range(3)]
            batch = bulk.enqueue_batch([bulk.build_request(Submission(sized_image(n))) for n in range(3, 6)])
            verdicts = wait_for_verdicts(client, singles + batch, timeout_s=120)
            time.sleep(2)  # a wrong redelivery would have reached the model by now
    assert all(v.status == "completed" for v in verdicts.values())
    assert slow.requests_per_image() == dict.fromkeys(range(6), 1)


def test_a_retry_countdown_longer_than_the_visibility_timeout_runs_once(
    redis_with_password: str, tmp_path: Path
) -> None:
    """The first model call fails (503); the retry waits 8-16 s, longer than the 6 s visibility timeout."""
    with RecordingStandIn("127.0.0.1", 0, max_running=8, service_time_s=0.05, fail_first=1) as flaky:
        settings = worker_settings(redis_with_password, flaky.url, tmp_path, visibility_timeout_s="6",
                                   retry_backoff_base_s="16", retry_backoff_max_s="16")
        with Fleet(worker_env(**settings), tmp_path / "workers", concurrency=2) as fleet, \
                ModerationClient(settings=load_settings(**settings)) as client:
            fleet.start(2)
            verdict = client.wait(client.submit(sized_image(0)), timeout=90)
            time.sleep(3)  # a redelivered copy of the countdown would run at the same moment as the original
    assert verdict.status == "completed"
    assert flaky.stats()["injected_failures"] == 1
    assert flaky.requests_per_image() == {0: 2}, "one failed call, one retry: the countdown ran once"


POISON = 99
"""The image whose moderation "crashes" its worker: the test SIGKILLs the worker when it reaches the model."""


def run_until_judged(fleet: Fleet, client: ModerationClient, ids: list[str], *, timeout_s: float,
                     max_kills: int) -> dict[str, Verdict]:
    """Keep one worker alive (start another whenever the last was killed) until every id has a verdict."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(fleet.workers) <= max_kills:
        found = client.get_many(ids)
        if len(found) == len(ids):
            return found
        if not fleet.alive():
            fleet.start()
        time.sleep(0.2)
    raise AssertionError(f"{len(ids) - len(client.get_many(ids))} of {len(ids)} unjudged after "
                         f"{len(fleet.workers) - 1} kills")


@pytest.fixture()
def crashing(redis_with_password: str, tmp_path: Path) -> Iterator[tuple[RecordingStandIn, Fleet, dict[str, str]]]:
    """A stand-in that SIGKILLs the worker each time the POISON image reaches it, and a fleet of one worker.

    Visibility 6 s instead of 60 s only to keep four crash cycles short: what is tested is the bound."""
    with RecordingStandIn("127.0.0.1", 0, max_running=32, service_time_s=0.2) as standin:
        settings = worker_settings(redis_with_password, standin.url, tmp_path, visibility_timeout_s="6",
                                   retry_backoff_max_s="1")
        with Fleet(worker_env(**settings), tmp_path / "workers", concurrency=4) as fleet:
            standin.on_request = lambda number: fleet.kill_all() if number == POISON else None
            yield standin, fleet, settings


def assert_lost_after_bound(verdict: Verdict) -> None:
    assert verdict.status == "failed"
    assert verdict.error is not None and verdict.error.code == "worker_lost"
    assert "delivered 4 times" in verdict.error.message


def test_a_moderation_that_kills_every_worker_ends_worker_lost_and_the_fleet_carries_on(
    crashing: tuple[RecordingStandIn, Fleet, dict[str, str]],
) -> None:
    standin, fleet, settings = crashing
    with ModerationClient(settings=load_settings(**settings)) as client:
        fleet.start()
        poison = client.submit(sized_image(POISON))
        others = [client.submit(sized_image(n)) for n in range(8)]
        verdicts = run_until_judged(fleet, client, [poison, *others], timeout_s=200, max_kills=8)
        assert_lost_after_bound(verdicts[poison])
        assert all(verdicts[i].status == "completed" for i in others)
        assert standin.requests_per_image()[POISON] == 3, "three deliveries reached the model, the 4th did not"
        survivor = fleet.alive()
        after = client.wait(client.submit(sized_image(20)), timeout=60)
        assert after.status == "completed" and fleet.alive() == survivor, "the fleet carries on"


def test_a_crashing_item_of_a_batch_ends_worker_lost_and_its_siblings_get_verdicts(
    crashing: tuple[RecordingStandIn, Fleet, dict[str, str]],
) -> None:
    standin, fleet, settings = crashing
    with ModerationClient(settings=load_settings(**settings), queue="bulk") as bulk:
        fleet.start()
        requests = [bulk.build_request(Submission(sized_image(n))) for n in (0, 1, POISON, 2, 3, 4)]
        ids = bulk.enqueue_batch(requests)
        verdicts = run_until_judged(fleet, bulk, ids, timeout_s=200, max_kills=8)
    poison = requests[2].id
    assert_lost_after_bound(verdicts[poison])
    assert all(v.status == "completed" for i, v in verdicts.items() if i != poison)
    # Once in the batch, then three deliveries of its own single-image message.
    assert standin.requests_per_image()[POISON] == 4
