"""Benchmarks for issue 3: the compression engine against sharp and its codec, the local-cloud pipeline against
the engine, and upload accept latency against CSV size. `make bench` (or `python -m bench`) runs them.

Every figure that is judged is a ratio against a baseline measured in the same run, interleaved with it, from
medians: the machine is shared and noisy, so absolute times are reported but never asserted."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CORPUS = ROOT.parent / "shared" / "corpus"
RESULTS = BENCH / "results"
