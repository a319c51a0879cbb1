"""Engine-bound workers: a process pool where each worker calls compress_image on the same bytes the pipeline
fetches. Kept apart from bench.pipeline so that spawning a worker imports nothing but the engine."""

from __future__ import annotations

import time
from pathlib import Path

_SOURCES: dict[str, bytes] = {}


def load(paths: list[str]) -> None:
    """Pool initializer: read every image once, so tasks time compression only."""
    for path in paths:
        _SOURCES[Path(path).name] = Path(path).read_bytes()


def compress(name: str) -> tuple[float, float]:
    """Compress one image; (wall seconds, CPU seconds of this thread)."""
    from ips.imaging import compress_image

    data = _SOURCES[name]
    wall, cpu = time.perf_counter(), time.thread_time()
    compress_image(data, quality=50)
    return time.perf_counter() - wall, time.thread_time() - cpu
