"""Multi-index hashing of 256-bit PDQ hashes: which index buckets a near match must share with its query.

The hash is cut into 16 segments of 16 bits. If two hashes differ in at most 31 bits, by pigeonhole at least
one of the 16 segments differs in at most one bit (16 segments x 2 bits = 32 > 31). So a stored hash is filed
under its 16 exact segment values, and a query probes, per segment, its own value and the 16 values one bit
away: 16 x 17 = 272 buckets, each holding on average N / 65,536 of N stored hashes (about 4,000 candidates
to verify at N = 1M, against 1M for a scan). Recall is complete for distance <= 31; beyond that it is not
guaranteed, hence the setting's upper bound. (32 segments of 8 bits would need only exact probes but give
buckets of N / 256, 30 times more candidates.)
"""

from __future__ import annotations

SEGMENTS = 16
SEGMENT_BITS = 16
MAX_DISTANCE = 2 * SEGMENTS - 1
"""The largest distance for which the probes below find every stored hash."""
_MASK = (1 << SEGMENT_BITS) - 1


def segment_values(pdq: int) -> list[int]:
    """The 16 segment values of a hash, lowest bits first (segment k holds bits 16k .. 16k+15)."""
    return [(pdq >> (SEGMENT_BITS * k)) & _MASK for k in range(SEGMENTS)]


def probes(pdq: int) -> list[tuple[int, int]]:
    """(segment, value) buckets to read: each segment's own value and its 16 one-bit neighbours."""
    found: list[tuple[int, int]] = []
    for segment, value in enumerate(segment_values(pdq)):
        found.append((segment, value))
        found.extend((segment, value ^ (1 << bit)) for bit in range(SEGMENT_BITS))
    return found
