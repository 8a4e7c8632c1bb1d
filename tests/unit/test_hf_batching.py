"""MicroBatcher: concurrent submits share runs, each caller gets its own result or exception."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from worker.inference.hf_batching import MicroBatcher


def _submit_all(batcher: MicroBatcher[int, int], items: Sequence[int]) -> dict[int, int | BaseException]:
    results: dict[int, int | BaseException] = {}

    def call(item: int) -> None:
        try:
            results[item] = batcher.submit(item)
        except Exception as exc:
            results[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_concurrent_items_run_together_and_come_back_to_their_callers() -> None:
    runs: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int | BaseException]:
        runs.append(list(items))
        return [item * 10 for item in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8, wait_s=0.3)
    try:
        assert _submit_all(batcher, range(6)) == {i: i * 10 for i in range(6)}
        assert len(runs) < 6 and sorted(item for batch in runs for item in batch) == list(range(6))
    finally:
        batcher.close()


def test_batches_never_exceed_max_batch() -> None:
    sizes: list[int] = []

    def run(items: Sequence[int]) -> list[int | BaseException]:
        sizes.append(len(items))
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=2, wait_s=0.2)
    try:
        _submit_all(batcher, range(5))
        assert max(sizes) <= 2 and sum(sizes) == 5
    finally:
        batcher.close()


def test_items_with_different_keys_never_share_a_run() -> None:
    runs: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int | BaseException]:
        runs.append(list(items))
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8, wait_s=0.3, key=lambda item: item % 2)
    try:
        assert _submit_all(batcher, range(6)) == {i: i for i in range(6)}
        assert all(len({item % 2 for item in batch}) == 1 for batch in runs)
    finally:
        batcher.close()


def test_a_per_item_exception_fails_only_that_caller() -> None:
    def run(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {item}") if item == 3 else item for item in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8, wait_s=0.2)
    try:
        results = _submit_all(batcher, range(5))
        assert isinstance(results.pop(3), ValueError)
        assert results == {0: 0, 1: 1, 2: 2, 4: 4}
    finally:
        batcher.close()


def test_a_failed_run_fails_every_caller_of_that_batch_and_the_next_batch_runs() -> None:
    fail = threading.Event()
    fail.set()

    def run(items: Sequence[int]) -> list[int | BaseException]:
        if fail.is_set():
            raise RuntimeError("device lost")
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8, wait_s=0.2)
    try:
        assert all(isinstance(result, RuntimeError) for result in _submit_all(batcher, range(3)).values())
        fail.clear()
        assert batcher.submit(7) == 7
    finally:
        batcher.close()


def test_closed_batcher_refuses_new_items() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: list(items), max_batch=1, wait_s=0)
    assert batcher.submit(1) == 1
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(2)


@pytest.mark.parametrize(("max_batch", "wait_s"), [(0, 0.0), (1, -1.0)])
def test_bad_limits_are_refused(max_batch: int, wait_s: float) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: list(items), max_batch=max_batch, wait_s=wait_s)
