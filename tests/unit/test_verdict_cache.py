"""The verdict cache against a real redis-server and a real SQLite store: what is reused, what never is."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.photos import jpeg, near_miss, photo, reencoded_and_resized
from worker.intake import PreparedImage, prepare_image
from worker.matching.cache import VerdictCache
from worker.matching.pdq import hamming
from worker.matching.segments import MAX_DISTANCE, SEGMENTS, probes, segment_values
from worker.models import ErrorInfo, ImageRef, MatchInfo, ModerationRequest, PolicyRef, Verdict, utcnow
from worker.observability import metrics
from worker.stores import VerdictStore, open_store

PROMPT = "a" * 64
MODEL = "llavaguard-standin"


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    """The session's redis-server, database 7 emptied before and after."""
    found: redis.Redis[bytes] = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/7")
    found.flushdb()
    yield found
    found.flushdb()
    found.close()


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[VerdictStore]:
    opened = open_store(f"sqlite:///{tmp_path}/v.db")
    yield opened
    opened.close()


class Clock:
    """Generations follow this clock; Redis expires keys by its own, so start at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def prepared(data: bytes) -> PreparedImage:
    return prepare_image(data, source=None, max_pixels=10**8, max_side_px=1024)


def request(n: int = 0) -> ModerationRequest:
    return ModerationRequest(id=f"r{n}", image=ImageRef(data=b"x"))


def judged(store: VerdictStore, image: PreparedImage, n: int = 0, *, prompt: str = PROMPT, **fields: object) -> Verdict:
    verdict = Verdict(
        id=f"v{n}", status="completed", rating="Unsafe", category="O3: Sexual Content", rationale="because",
        policy=PolicyRef(name="default", sha256=prompt), model=MODEL, image=image.info, created_at=utcnow(),
        completed_at=utcnow(), score=0.9, score_source="logprobs", **fields,  # type: ignore[arg-type]
    )
    store.save(verdict)
    return verdict


def cache(client: redis.Redis[bytes], store: VerdictStore, **kwargs: object) -> VerdictCache:
    return VerdictCache(client, store, **kwargs)  # type: ignore[arg-type]


def test_the_same_bytes_reuse_the_answer_exactly(client: redis.Redis[bytes], store: VerdictStore) -> None:
    matcher, image = cache(client, store), prepared(jpeg(photo()))
    assert matcher.match(request(), image, PROMPT, MODEL) is None
    matcher.remember(request(), judged(store, image), True)
    outcome = matcher.match(request(1), image, PROMPT, MODEL)
    assert outcome is not None
    assert outcome.match == MatchInfo(kind="exact", distance=0, verdict_id="v0")
    assert (outcome.rating, outcome.category, outcome.rationale, outcome.score) == (
        "Unsafe", "O3: Sexual Content", "because", 0.9)


def test_a_reencoded_resized_copy_matches_by_pdq(client: redis.Redis[bytes], store: VerdictStore) -> None:
    matcher, original = cache(client, store), photo()
    first, copy = prepared(jpeg(original, 95)), prepared(reencoded_and_resized(original))
    matcher.remember(request(), judged(store, first), True)
    outcome = matcher.match(request(1), copy, PROMPT, MODEL)
    assert outcome is not None and outcome.match.kind == "pdq" and outcome.match.verdict_id == "v0"
    assert outcome.match.distance == hamming(str(first.info.pdq), str(copy.info.pdq))


def test_a_near_miss_beyond_the_distance_and_exact_mode_do_not_match(
    client: redis.Redis[bytes], store: VerdictStore
) -> None:
    original = photo()
    first, edited, copy = prepared(jpeg(original)), prepared(jpeg(near_miss(original))), prepared(
        reencoded_and_resized(original))
    assert 31 < hamming(str(first.info.pdq), str(edited.info.pdq)) <= 48
    cache(client, store).remember(request(), judged(store, first), True)
    assert cache(client, store).match(request(1), edited, PROMPT, MODEL) is None
    assert cache(client, store, mode="exact").match(request(1), copy, PROMPT, MODEL) is None
    assert cache(client, store, max_distance=1).match(request(1), copy, PROMPT, MODEL) is None


def test_another_prompt_or_model_never_reuses(client: redis.Redis[bytes], store: VerdictStore) -> None:
    matcher, image = cache(client, store), prepared(jpeg(photo()))
    matcher.remember(request(), judged(store, image), True)
    assert matcher.match(request(1), image, "b" * 64, MODEL) is None
    assert matcher.match(request(1), image, PROMPT, "another-model") is None


def test_failed_matched_and_redelivered_verdicts_are_not_filed(client: redis.Redis[bytes], store: VerdictStore) -> None:
    matcher, image = cache(client, store), prepared(jpeg(photo()))
    failed = Verdict(id="f", status="failed", policy=PolicyRef(name="default", sha256=PROMPT), image=image.info,
                     error=ErrorInfo(code="inference_unavailable", message="down"), created_at=utcnow(),
                     completed_at=utcnow())
    matcher.remember(request(), failed, True)
    matcher.remember(request(), judged(store, image, 1, match=MatchInfo(kind="exact", distance=0, verdict_id="v9")),
                     True)
    matcher.remember(request(), judged(store, image, 2), False)
    assert matcher.match(request(3), image, PROMPT, MODEL) is None
    assert client.dbsize() == 0


def test_an_earlier_verdict_gone_from_the_store_is_no_match(
    client: redis.Redis[bytes], store: VerdictStore, tmp_path: Path
) -> None:
    image, elsewhere = prepared(jpeg(photo())), open_store(f"sqlite:///{tmp_path}/elsewhere.db")
    try:
        verdict = judged(elsewhere, image)
    finally:
        elsewhere.close()
    matcher = cache(client, store)  # files a verdict its own store does not hold
    matcher.remember(request(), verdict, True)
    assert matcher.match(request(1), image, PROMPT, MODEL) is None


def test_answers_expire_after_the_ttl(client: redis.Redis[bytes], store: VerdictStore) -> None:
    clock, image = Clock(), prepared(jpeg(photo()))
    matcher = cache(client, store, ttl_s=1000, clock=clock)
    matcher.remember(request(), judged(store, image), True)
    clock.now += 500
    assert matcher.match(request(1), image, PROMPT, MODEL) is not None, "still in the previous generation"
    clock.now += 1000
    assert matcher.match(request(1), image, PROMPT, MODEL) is None
    assert all(0 < client.ttl(key) <= 1500 for key in client.scan_iter("llavaguard:match:*"))


def test_the_cache_holds_at_most_max_entries(client: redis.Redis[bytes], store: VerdictStore) -> None:
    matcher = cache(client, store, max_entries=4)
    images = [prepared(jpeg(photo(seed=n))) for n in range(3)]
    before = metrics.MATCH_CACHE_SKIPPED.labels(operation="full")._value.get()
    filed = [matcher.insert(judged(store, image, n)) for n, image in enumerate(images)]
    assert filed == [True, True, False]
    assert metrics.MATCH_CACHE_SKIPPED.labels(operation="full")._value.get() == before + 1


def test_a_redis_outage_fails_open(store: VerdictStore) -> None:
    down: redis.Redis[bytes] = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5,
                                           retry=Retry(NoBackoff(), 1))
    matcher, image = cache(down, store), prepared(jpeg(photo()))
    before = metrics.MATCH_CACHE_SKIPPED.labels(operation="lookup")._value.get()
    assert matcher.match(request(), image, PROMPT, MODEL) is None
    matcher.remember(request(), judged(store, image), True)  # logged and counted, never raised
    assert metrics.MATCH_CACHE_SKIPPED.labels(operation="lookup")._value.get() == before + 1


def test_the_probes_find_every_hash_within_31_bits_and_not_always_at_32() -> None:
    rng = random.Random(12)
    for _ in range(400):
        stored = rng.getrandbits(256)
        distance = rng.randint(0, MAX_DISTANCE)
        query = stored
        for bit in rng.sample(range(256), distance):
            query ^= 1 << bit
        filed = set(enumerate(segment_values(stored)))
        assert filed & set(probes(query)), f"missed at distance {distance}"
    two_per_segment = sum(0b11 << (16 * k) for k in range(SEGMENTS))  # 32 bits apart, 2 in every segment
    assert not set(enumerate(segment_values(0))) & set(probes(two_per_segment))
