"""A near-match index for PDQ hashes: multi-index hashing on 16 segments of 16 bits, in memory.

Two hashes within Hamming distance d differ by at most d // 16 bits in at least one of the 16 segments
(pigeonhole), so a lookup probes, per segment, the buckets of every value within that radius (17 probes
per segment at d = 31) and checks only the hashes found there: sub-linear in the bank's size, exact in
its answer (every hash within d is found, none farther is returned).

Small and self-contained so that the verdict cache's index (m-cache) can replace it when the two are folded.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

SEGMENTS = 16
SEGMENT_BITS = 16
_MASK = (1 << SEGMENT_BITS) - 1


class PdqIndex:
    def __init__(self) -> None:
        self._buckets: list[defaultdict[int, list[int]]] = [defaultdict(list) for _ in range(SEGMENTS)]
        self._hashes: list[int] = []
        self._ids: list[str] = []

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, pdq_hex: str, entry_id: str) -> None:
        value = int(pdq_hex, 16)
        position = len(self._hashes)
        self._hashes.append(value)
        self._ids.append(entry_id)
        for segment, bucket in enumerate(self._buckets):
            bucket[_segment(value, segment)].append(position)

    def nearest(self, pdq_hex: str, max_distance: int) -> tuple[str, str, int] | None:
        """(hash hex, entry id, distance) of the closest stored hash within `max_distance`, or None."""
        query = int(pdq_hex, 16)
        best: tuple[int, int] | None = None
        for position in self._candidates(query, max_distance // SEGMENTS):
            distance = (query ^ self._hashes[position]).bit_count()
            if distance <= max_distance and (best is None or distance < best[0]):
                best = (distance, position)
        if best is None:
            return None
        distance, position = best
        return f"{self._hashes[position]:064x}", self._ids[position], distance

    def _candidates(self, query: int, radius: int) -> set[int]:
        found: set[int] = set()
        flips = _flip_masks(radius)
        for segment, bucket in enumerate(self._buckets):
            value = _segment(query, segment)
            for flip in flips:
                found.update(bucket.get(value ^ flip, ()))
        return found


def _segment(value: int, segment: int) -> int:
    return (value >> (segment * SEGMENT_BITS)) & _MASK


_FLIPS: dict[int, list[int]] = {}


def _flip_masks(radius: int) -> list[int]:
    """Every 16-bit mask with at most `radius` bits set (radius 1: 17 masks, 2: 137, 3: 697)."""
    if radius not in _FLIPS:
        masks = [0]
        for k in range(1, radius + 1):
            masks.extend(sum(1 << bit for bit in bits) for bits in combinations(range(SEGMENT_BITS), k))
        _FLIPS[radius] = masks
    return _FLIPS[radius]
