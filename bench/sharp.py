"""Drive bench/sharp_worker.mjs: one long-lived node process running the original system's sharp call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import BENCH

WORKER = BENCH / "sharp_worker.mjs"
NODE_MODULES = BENCH / "node_modules"
# One libuv and one libvips thread: sharp gets the single core the Python engine gets.
_ENV = {**os.environ, "UV_THREADPOOL_SIZE": "1", "VIPS_CONCURRENCY": "1"}


class SharpUnavailable(RuntimeError):
    pass


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise SharpUnavailable("node is not on PATH")
    if not (NODE_MODULES / "sharp").exists():
        raise SharpUnavailable(f"sharp is not installed under {NODE_MODULES} (run `npm ci` in bench/)")
    return node


class SharpWorker:
    """`run(path)` answers (seconds, output bytes) as timed inside node with process.hrtime."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - fixed command line
            [node_executable(), str(WORKER)],
            cwd=BENCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=_ENV,
        )
        self._next = 0

    def _call(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._next += 1
        job["id"] = self._next
        self._process.stdin.write(json.dumps(job) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise SharpUnavailable(f"the sharp worker exited ({self._process.poll()})")
        answer = json.loads(line)
        if answer.get("id") != job["id"]:
            raise SharpUnavailable(f"out-of-order answer from the sharp worker: {answer}")
        if "error" in answer:
            raise SharpUnavailable(f"sharp failed on {job.get('path')}: {answer['error']}")
        return answer

    def load(self, path: Path) -> None:
        """Read the file into the worker's memory once, so runs time the compression only."""
        self._call({"op": "load", "path": str(path)})

    def run(self, path: Path, out: Path | None = None) -> tuple[float, int]:
        answer = self._call({"op": "run", "path": str(path), **({"out": str(out)} if out else {})})
        return answer["ns"] / 1e9, int(answer["bytes"])

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            try:
                self._process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> SharpWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sharp_peak(path: Path) -> dict[str, int]:
    """Peak RSS of a fresh node process compressing `path` once: {"before_kb", "peak_kb", "bytes"}."""
    done = subprocess.run(  # noqa: S603 - fixed command line
        [node_executable(), str(WORKER), "--peak", str(path)],
        cwd=BENCH,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=_ENV,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def versions() -> dict[str, str]:
    done = subprocess.run(  # noqa: S603 - fixed command line
        [node_executable(), "--input-type=module", "-e", _VERSIONS],
        cwd=BENCH,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


_VERSIONS = (
    "import sharp from 'sharp';"
    "console.log(JSON.stringify({node: process.version, sharp: sharp.versions.sharp, libvips: sharp.versions.vips}))"
)
