"""Small statistics helpers: medians, percentiles, ratios and the interleaving order of measurements.

Pure functions without dependencies, so they are unit-tested (tests/unit/test_bench_stats.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def median(values: Iterable[float]) -> float:
    """The median; the mean of the two middle values for an even count. Raises ValueError when empty."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, median and max of a non-empty sample: how noisy the rounds were."""
    return {"min": min(values), "median": median(values), "max": max(values), "n": len(values)}


def rotated[T](items: Sequence[T], shift: int) -> list[T]:
    """`items` rotated left by `shift`: used to vary which contender runs first for each image and round, so no
    contender always gets the warm (or the cold) cache."""
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def megapixels_per_second(pixels: int, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, not {seconds}")
    return pixels / 1e6 / seconds


def summed_medians(samples: dict[str, list[float]]) -> float:
    """The sum over keys (images) of the median of each key's samples (rounds): a total time per pass that one
    slow round of a single image cannot move much."""
    return sum(median(values) for values in samples.values())


def cycle[T](items: Sequence[T], count: int) -> list[T]:
    """`count` items taken from `items` in order, starting over at the end."""
    if count < 0:
        raise ValueError("count must not be negative")
    if not items:
        if count:
            raise ValueError("cannot cycle an empty sequence")
        return []
    return [items[index % len(items)] for index in range(count)]
