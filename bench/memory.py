"""Peak memory of one compression in a fresh process (tracemalloc does not see Pillow's C allocations).

`python -m bench.memory FILE` imports the engine, reads FILE, notes the resident-set high-water mark (VmHWM),
compresses FILE once and prints the high-water mark again as JSON. `python_peak(path)` runs that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import ROOT


def high_water_kb() -> int:
    """VmHWM of this process in KiB (the peak resident set size so far)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def python_peak(path: Path) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}"}
    done = subprocess.run(  # noqa: S603 - fixed command line
        [sys.executable, "-m", "bench.memory", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _probe(path: Path) -> None:
    from ips.shared.imaging import compress_image

    data = path.read_bytes()
    before = high_water_kb()
    result = compress_image(data)
    print(json.dumps({"before_kb": before, "peak_kb": high_water_kb(), "bytes": result.output_bytes}))


if __name__ == "__main__":
    _probe(Path(sys.argv[1]))
