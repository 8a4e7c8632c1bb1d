"""Verdict-cache benchmark (issue 12): lookup latency at N stored hashes, Redis bytes per hash, GPU calls avoided.

    .venv/bin/python -m ops.bench.matching [--entries 1000000] [--queries 2000] [--stream 20000] [--duplicates 0.3]

Against a private redis-server on loopback. Redis is filled in bulk into the very layout a worker's inserts
leave (exact index, entries, 16 PDQ segment sets per entry, expiry), with random 256-bit hashes (PDQ bits are
balanced by construction: half of them are above the median). Lookups go through `VerdictCache.lookup`, the
worker's own code: random queries (almost all misses) and near duplicates of stored hashes (1..31 bits
flipped; every one must be found). The stream part judges a stream where a share of the images re-uploads an
earlier one (half exact, half with up to 31 bits changed), filing each model answer, and counts the model
requests it did not make.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from tests.services import redis_server
from worker.matching.cache import VerdictCache, _key, queue_entry, scope
from worker.models import ImageInfo

SCOPE = scope("0" * 64, "bench-model")
BATCH = 2000


def fill(client: redis.Redis[bytes], cache: VerdictCache, count: int, rng: random.Random) -> list[int]:
    """Redis as `count` inserts leave it (same keys, members, values, expiry), built in bulk: one SADD per
    bucket with all its members instead of 16 commands per entry (the result is the same; the time is not)."""
    gen, ttl_s = cache._generation(), 30 * 24 * 3600
    segments = np.random.default_rng(rng.getrandbits(32)).integers(0, 1 << 16, size=(count, 16), dtype=np.uint16)
    pdq_bytes = segments[:, ::-1].astype(">u2").tobytes()  # big-endian: segment 15 holds the first two bytes
    ids = np.arange(1, count + 1)
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, BATCH):
        stop = min(start + BATCH, count)
        pipe.hset(_key(SCOPE, gen, "x"), mapping={rng.randbytes(32): f"verdict-{i:012d}" for i in range(start, stop)})
        pipe.hset(_key(SCOPE, gen, "e"), mapping={
            str(i + 1): pdq_bytes[32 * i: 32 * i + 32] + f"verdict-{i:012d}".encode() for i in range(start, stop)})
    pipe.execute()
    for segment in range(16):
        order = np.argsort(segments[:, segment], kind="stable")
        values, starts = np.unique(segments[order, segment], return_index=True)
        for value, members in zip(values, np.split(ids[order], starts[1:]), strict=True):
            key = _key(SCOPE, gen, f"{segment:x}{int(value):04x}")
            pipe.sadd(key, *members.tolist())
            pipe.expire(key, ttl_s)
        pipe.execute()
    pipe.expire(_key(SCOPE, gen, "x"), ttl_s).expire(_key(SCOPE, gen, "e"), ttl_s).execute()
    sample = rng.sample(range(count), min(count, 5000))
    return [int.from_bytes(pdq_bytes[32 * i: 32 * i + 32], "big") for i in sample]


def flipped(pdq: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(256), bits):
        pdq ^= 1 << bit
    return pdq


def info(pdq: int, rng: random.Random) -> ImageInfo:
    return ImageInfo(sha256=rng.randbytes(32).hex(), pdq=f"{pdq:064x}", pdq_quality=100)


def timed_lookups(cache: VerdictCache, queries: list[ImageInfo]) -> tuple[list[float], int]:
    latencies, found = [], 0
    for query in queries:
        started = time.perf_counter()
        hit = cache.lookup(SCOPE, query)
        latencies.append((time.perf_counter() - started) * 1000)
        found += hit is not None
    return latencies, found


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def stream(client: redis.Redis[bytes], duplicates: float, length: int, rng: random.Random) -> float:
    """Share of model requests avoided on a stream where `duplicates` of the images were seen before."""
    cache = VerdictCache(client, store=None)  # type: ignore[arg-type]  # lookup() alone reads no store
    seen: list[tuple[str, int]] = []
    model_requests = 0
    for n in range(length):
        if seen and rng.random() < duplicates:
            sha, pdq = rng.choice(seen)
            query = ImageInfo(sha256=sha, pdq=f"{pdq:064x}", pdq_quality=100) if rng.random() < 0.5 else info(
                flipped(pdq, rng.randint(1, 31), rng), rng)
        else:
            query = info(rng.getrandbits(256), rng)
        if cache.lookup("stream" + SCOPE[6:], query) is None:
            model_requests += 1
            pipe = client.pipeline(transaction=False)
            queue_entry(pipe, "stream" + SCOPE[6:], cache._generation(), 10**9 + n,
                        bytes.fromhex(str(query.sha256)), bytes.fromhex(str(query.pdq)), f"s{n}", 3600)
            pipe.execute()
            seen.append((str(query.sha256), int(str(query.pdq), 16)))
    return 1 - model_requests / length


def run(entries: int, queries: int, stream_length: int, duplicates: float) -> dict[str, Any]:
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        client: redis.Redis[bytes] = redis.Redis.from_url(url)
        cache = VerdictCache(client, store=None)  # type: ignore[arg-type]
        before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        stored = fill(client, cache, entries, rng)
        fill_s = time.perf_counter() - started
        bytes_per_hash = (int(client.info("memory")["used_memory"]) - before) / entries
        random_ms, _ = timed_lookups(cache, [info(rng.getrandbits(256), rng) for _ in range(queries)])
        near = [info(flipped(rng.choice(stored), rng.randint(1, 31), rng), rng) for _ in range(queries)]
        near_ms, found = timed_lookups(cache, near)
        avoided = stream(client, duplicates, stream_length, rng)
    return {
        "entries": entries, "fill_s": fill_s, "bytes_per_hash": bytes_per_hash,
        "random_p50_ms": statistics.median(random_ms), "random_p99_ms": percentile(random_ms, 0.99),
        "near_p50_ms": statistics.median(near_ms), "near_p99_ms": percentile(near_ms, 0.99),
        "near_recall": found / queries, "duplicates": duplicates, "gpu_calls_avoided": avoided,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--stream", type=int, default=20_000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    args = parser.parse_args()
    r = run(args.entries, args.queries, args.stream, args.duplicates)
    print(f"stored hashes            {r['entries']:>12,}   (filled in {r['fill_s']:.0f} s)")
    print(f"Redis bytes per hash     {r['bytes_per_hash']:>12,.0f}")
    print(f"lookup, random  p50/p99  {r['random_p50_ms']:>8.2f} / {r['random_p99_ms']:.2f} ms")
    print(f"lookup, near    p50/p99  {r['near_p50_ms']:>8.2f} / {r['near_p99_ms']:.2f} ms   "
          f"(recall {r['near_recall']:.1%} at <= 31 bits)")
    print(f"GPU calls avoided        {r['gpu_calls_avoided']:>12.1%}   "
          f"(stream of {args.stream:,}, {r['duplicates']:.0%} re-uploads)")


if __name__ == "__main__":
    main()
