"""Engine-bound workers: a process pool where each worker calls compress_image on the same bytes the pipeline
fetches. Kept apart from bench.pipeline so that spawning a worker imports nothing but the engine.

A source is `name` or `name?query`: the corpus file, with `\\0` and the query appended as the pipeline's image host
serves it (localcloud.source_host.SourceHost with `distinct_queries`), so both sides compress the same bytes."""

from __future__ import annotations

import time
from pathlib import Path

_SOURCES: dict[str, bytes] = {}


def load(paths: list[str]) -> None:
    """Pool initializer: read every image once, so tasks time compression only."""
    for path in paths:
        _SOURCES[Path(path).name] = Path(path).read_bytes()


def source_bytes(source: str) -> bytes:
    name, _, query = source.partition("?")
    data = _SOURCES[name]
    return data + b"\0" + query.encode() if query else data


def compress(source: str) -> tuple[float, float]:
    """Compress one image; (wall seconds, CPU seconds of this thread)."""
    from ips.shared.imaging import compress_image

    data = source_bytes(source)
    wall, cpu = time.perf_counter(), time.thread_time()
    compress_image(data, quality=50)
    return time.perf_counter() - wall, time.thread_time() - cpu
