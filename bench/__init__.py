"""Benchmarks for issue 3: the compression engine against sharp and its codec, the local-cloud pipeline against
the engine, and upload accept latency against CSV size. `make bench` (or `python -m bench`) runs them.

Every figure that is judged is a ratio against a baseline measured in the same run, interleaved with it, from
medians: the machine is shared and noisy, so absolute times are reported but never asserted."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SAMPLE_IMAGES = ROOT / "samples" / "images"
SHARED_CORPUS = ROOT.parent / "shared" / "corpus"  # the bigger corpus (56 photos), when it sits beside the clone


def corpus_folder() -> Path:
    """BENCH_CORPUS when set; else the shared corpus when there is one; else the repository's sample images."""
    if configured := os.environ.get("BENCH_CORPUS"):
        return Path(configured)
    return SHARED_CORPUS if (SHARED_CORPUS / "MANIFEST.tsv").is_file() else SAMPLE_IMAGES


CORPUS = corpus_folder()
RESULTS = BENCH / "results"
