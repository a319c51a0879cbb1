"""Cost flat as history grows (issue 17): the same-size catalogue sent three times into one local cloud.

Each repeat is a catalogue of P products x 2 small JPEGs (`bench.small`'s images and route: the presigned
upload, watched from the moment the file lands until `completedAt`), with URLs of its own (`?v=` per repeat, so
no repeat reuses another's outputs: each does the same work). The cloud keeps everything the earlier repeats
left (their requests, products, reuse entries, markers, stored outputs, the stream's records), as a local cloud
used for a day does. A cost on the hot path that grows with what was done before shows as a later repeat slower
than the first.

A catalogue of 100 products goes first, unmeasured (as the pipeline part warms up): the first minutes of a
cloud are dearer (DynamoDB Local's JIT compiles its hot paths over its first thousand or so requests).

Reported per repeat: images/s, the time until every product was listed, and every process's CPU per image done
(where a growing cost would show). Target: the third repeat's images/s >= 0.9 of the first's. A repeat that has
not completed after `cap_s` seconds is reported with how far it got (its rate from the images done so far) and
the ratio is then not judged met."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter
from bench.small import IMAGES_PER_PRODUCT, _cpu_by_part, _one, _pids, catalogue, small_image_cloud

PRODUCTS = 1000
REPEATS = 3
WARM_UP = 100  # products sent before the first repeat
TARGET_THIRD_VS_FIRST = 0.90

Log = Callable[[str], None]


def run_repeat(
    log: Log, *, products: int = PRODUCTS, repeats: int = REPEATS, cap_s: float = 300, workers: int | None = None
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    cloud_workers = workers or 2 * (os.cpu_count() or 1)
    with (
        tempfile.TemporaryDirectory(prefix="ips-bench-repeat-") as scratch,
        small_image_cloud(Path(scratch), cloud_workers) as (cloud, host, names, session),
    ):
        cloud.functions["process"].warm(cloud_workers)  # all now, so that their CPU is counted from the start
        # A small catalogue first: the JVM's JIT (DynamoDB Local), connections and first-use costs would
        # otherwise make the first repeat slower than it is, and the ratio flatter than it is.
        _one(session, cloud.gateway.url, catalogue(WARM_UP, host.url, names, series="warm"), WARM_UP, cap_s)
        for number in range(1, repeats + 1):
            body = catalogue(products, host.url, names, series=f"repeat{number}")
            meter = CpuMeter(_pids(cloud))
            meter.start()
            run = _one(session, cloud.gateway.url, body, products, cap_s)
            run["repeat"] = number
            run["cpu_s"] = meter.stop()
            runs.append(run)
            ended = "completed" if run["completed"] else f"{run['images_done']:,} done (cap)"
            rate = f"{run['images_per_s']:.1f} images/s over {run['seconds']:.0f}s"
            log(f"repeat: {number}/{repeats}: {rate}, {ended}")
    return summarise(runs, products, cloud_workers, cap_s)


def summarise(runs: list[dict[str, Any]], products: int, workers: int, cap_s: float) -> dict[str, Any]:
    first, last = runs[0], runs[-1]
    ratio = last["images_per_s"] / first["images_per_s"] if first["images_per_s"] else None
    completed = all(run["completed"] for run in runs)
    for run in runs:
        run["cpu_ms_per_image"] = {
            part: 1000 * seconds / max(1, run["images_done"]) for part, seconds in _cpu_by_part(run["cpu_s"]).items()
        }
    cpu_first, cpu_last = (sum(run["cpu_ms_per_image"].values()) for run in (first, last))
    return {
        "products": products,
        "images_per_product": IMAGES_PER_PRODUCT,
        "repeats": len(runs),
        "workers": workers,
        "cap_s": cap_s,
        "runs": runs,
        "images_per_s": [run["images_per_s"] for run in runs],
        "ratio_last_vs_first": ratio,
        # Every process's CPU per image, last repeat over first: what a growing cost shows as, however loaded
        # the machine (the rate's ratio moves with the other jobs beside the run; this one much less).
        "cpu_per_image_last_vs_first": cpu_last / cpu_first if cpu_first else None,
        "targets": [
            {
                "name": f"repeat {len(runs)} vs repeat 1 images/s ({products:,} products x {IMAGES_PER_PRODUCT})",
                "target": f">= {TARGET_THIRD_VS_FIRST:.2f}",
                "actual": ratio,
                "met": bool(ratio is not None and completed and ratio >= TARGET_THIRD_VS_FIRST),
            }
        ],
    }


def repeat_rows(repeat: dict[str, Any]) -> list[list[str]]:
    from bench.report import fmt_num, verdict

    rows = []
    for run in repeat["runs"]:
        ended = "completed" if run["completed"] else f"{run['images_done']:,} of {run['images']:,} done (cap)"
        listed = f"{run['listed_s']:.1f} s" if run["listed_s"] is not None else "not all"
        rows.append(
            [
                f"repeat {run['repeat']}: {repeat['products']:,} products x {repeat['images_per_product']}",
                f"{run['images_per_s']:.1f} images/s over {run['seconds']:.0f} s ({ended}); all listed after {listed}",
                "",
                "-",
                "-",
            ]
        )
        costs = ", ".join(f"{part} {value:.1f}" for part, value in run["cpu_ms_per_image"].items())
        rows.append([f"  CPU ms per image done, repeat {run['repeat']}", costs, "", "-", "-"])
    rows.append(
        [
            f"CPU per image, repeat {repeat['repeats']} vs repeat 1 (all processes)",
            "",
            fmt_num(repeat.get("cpu_per_image_last_vs_first"), digits=2),
            "-",
            "-",
        ]
    )
    for target in repeat["targets"]:
        rows.append([target["name"], "", fmt_num(target["actual"], digits=2), target["target"], verdict(target["met"])])
    return rows
