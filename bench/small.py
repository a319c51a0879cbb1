"""Small images at scale (issue 11): catalogues of P products x 2 small JPEGs (64 x 48, about a millisecond each
to compress) through the presigned route, at 500 and 20,000 products, in one local cloud with its default
workers (as `make up` runs it).

Each catalogue is uploaded once (POST /api/v1/uploads, then the S3 POST of the file). From the moment the S3
POST is answered (the file has landed) the run watches two things: when every product record exists (each
product is then listed by the status API), and when the request completes (`completedAt`). Throughput is the
images over the time from the landing to `completedAt`. Every URL is distinct (the image host appends the
query's bytes after the JPEG's end), so no image reuses another's output. A catalogue that has not completed
after `cap_s` seconds is reported with how far it got (its throughput then from the images counted so far).

Targets: at the largest size, >= 100 images/s and every product listed within 20 s of the landing; and cost
per image flat as work grows: images/s at the largest size >= 80% of images/s at the smallest."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from bench.cloud import local_cloud
from bench.cpu import CpuMeter
from bench.pipeline import (
    FUNCTION_PID_PREFIX,
    PROBE_DIR_VARIABLE,
    _stage_means,
    read_invocations,
    read_probe,
)
from localcloud.source_host import SourceHost

API_KEY = "local-dev-key"
SIZES = (500, 20_000)  # products
IMAGES_PER_PRODUCT = 2
IMAGE_SIZE = (64, 48)
DISTINCT_FILES = 16
TARGET_IMAGES_PER_S = 100.0
TARGET_LISTED_S = 20.0
TARGET_FLAT = 0.80
FINAL = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED")
# As often as the CLI polls (`ips wait`): each poll reads a page of products, which costs SecantusDB time in
# proportion to the request's products (it sorts them all), so 4 polls a second took a core at 20,000 products.
# The rate is measured from `completedAt`; only when all products were listed is read to this resolution.
POLL_S = 1.0

Log = Callable[[str], None]


def make_images(folder: Path) -> list[str]:
    """A few small photos-like JPEGs (gradients with noise), the names the catalogue cycles through."""
    import random

    from PIL import Image

    names = []
    generator = random.Random(11)
    width, height = IMAGE_SIZE
    for number in range(DISTINCT_FILES):
        image = Image.new("RGB", IMAGE_SIZE)
        image.putdata(
            [
                (
                    (x * 4 + number * 13 + generator.randrange(24)) % 256,
                    (y * 5 + number * 7 + generator.randrange(24)) % 256,
                    (x + y + number * 29) % 256,
                )
                for y in range(height)
                for x in range(width)
            ]
        )
        name = f"small-{number}.jpg"
        image.save(folder / name, "JPEG", quality=90)
        names.append(name)
    return names


def catalogue(products: int, base: str, names: list[str], series: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["S. No.", "Product Name", "Input Image Urls"])
    for row in range(1, products + 1):
        urls = [
            f"{base}/{names[(row * IMAGES_PER_PRODUCT + k) % len(names)]}?v={series}-{row}-{k}"
            for k in range(IMAGES_PER_PRODUCT)
        ]
        writer.writerow([row, f"Small product {row}", ",".join(urls)])
    return out.getvalue().encode()


def run_small(log: Log, *, sizes: tuple[int, ...] = SIZES, cap_s: float = 900, workers: int | None = None) -> dict:
    runs: dict[str, Any] = {}
    cloud_workers = workers or 2 * (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="ips-bench-small-") as scratch:
        probe = Path(scratch) / "probe"
        probe.mkdir()
        os.environ[PROBE_DIR_VARIABLE] = str(probe)
        try:
            with small_image_cloud(
                Path(scratch),
                cloud_workers,
                environment_setup="bench.pipeline:install_probe",
                passthrough=(PROBE_DIR_VARIABLE,),
            ) as (
                cloud,
                host,
                names,
                session,
            ):
                for products in sizes:
                    body = catalogue(products, host.url, names, series=str(products))
                    meter = CpuMeter(_pids(cloud))
                    meter.start()
                    run = _one(session, cloud.gateway.url, body, products, cap_s)
                    run["cpu_s"] = meter.stop()
                    run["steps"] = _steps(probe, run["request_id"])
                    runs[str(products)] = run
                    listed = f"{run['listed_s']:.1f}s" if run["listed_s"] is not None else "not all"
                    log(
                        f"small: {products:,} products x {IMAGES_PER_PRODUCT}: {run['images_per_s']:.1f} "
                        f"images/s, all products listed after {listed}, {run['status']} after {run['seconds']:.0f}s"
                    )
        finally:
            os.environ.pop(PROBE_DIR_VARIABLE, None)
    return summarise(runs, sizes, cloud_workers, cap_s)


@contextmanager
def small_image_cloud(
    scratch: Path, workers: int, **cloud_options: Any
) -> Iterator[tuple[Any, SourceHost, list[str], requests.Session]]:
    """A local cloud with `workers` invocations, the host of the small images (every URL its own source, so
    nothing is reused) and a session with the bench's key: what the small and history parts send catalogues to."""
    folder = scratch / "images"
    folder.mkdir()
    names = make_images(folder)
    with SourceHost(folder) as host:
        host.distinct_queries = True
        throttle: dict[str, Any] = {"throttle_rate": 1000, "throttle_burst": 1000}
        with local_cloud(host.origin, workers, scratch / "state", **throttle, **cloud_options) as cloud:
            session = requests.Session()
            session.headers["x-api-key"] = API_KEY
            yield cloud, host, names, session


def _pids(cloud: Any) -> dict[str, int]:
    pids = {child.name: child.process.pid for child in cloud.children if child.process is not None}
    for name, function in cloud.functions.items():
        pids.update({f"{FUNCTION_PID_PREFIX}{name}#{n}": pid for n, pid in enumerate(function.pids())})
    return pids


def _steps(probe: Path, request_id: str) -> dict[str, Any]:
    """Per image, the process function's timed steps (ms), and its invocations' wall and CPU per image."""
    records = [record for record in read_probe(probe)[0] if record.request_id == request_id]
    invocations = [call for call in read_invocations(probe) if set(call.images) == {request_id}]
    images = sum(sum(call.images.values()) for call in invocations)
    return {
        "images_timed": len(records),
        "stage_ms_mean": _stage_means(records),
        "process_wall_ms_per_image": 1000 * sum(call.wall_s for call in invocations) / max(1, images),
        "process_cpu_ms_per_image": 1000 * sum(call.cpu_s for call in invocations) / max(1, images),
        "images_per_invocation": images / max(1, len(invocations)),
    }


def summarise(runs: dict[str, Any], sizes: tuple[int, ...], workers: int, cap_s: float) -> dict[str, Any]:
    small, large = runs[str(sizes[0])], runs[str(sizes[-1])]
    flat = large["images_per_s"] / small["images_per_s"] if small["images_per_s"] else None
    return {
        "sizes": list(sizes),
        "images_per_product": IMAGES_PER_PRODUCT,
        "image_size": list(IMAGE_SIZE),
        "workers": workers,
        "cap_s": cap_s,
        "runs": runs,
        "images_per_s": large["images_per_s"],
        "listed_s": large["listed_s"],
        "ratio_large_vs_small": flat,
        "targets": [
            {
                "name": f"small images/s at {sizes[-1]:,} products",
                "target": f">= {TARGET_IMAGES_PER_S:g}",
                "actual": large["images_per_s"],
                "met": bool(large["completed"] and large["images_per_s"] >= TARGET_IMAGES_PER_S),
            },
            {
                "name": f"every product listed after the file lands ({sizes[-1]:,} products), s",
                "target": f"<= {TARGET_LISTED_S:g}",
                "actual": large["listed_s"],
                "met": bool(large["listed_s"] is not None and large["listed_s"] <= TARGET_LISTED_S),
            },
            {
                "name": f"images/s at {sizes[-1]:,} vs {sizes[0]:,} products",
                "target": f">= {TARGET_FLAT:.2f}",
                "actual": flat,
                "met": bool(flat is not None and large["completed"] and flat >= TARGET_FLAT),
            },
        ],
    }


def _one(session: requests.Session, api: str, body: bytes, products: int, cap_s: float) -> dict[str, Any]:
    from bench.upload import _product_counter

    slot = session.post(f"{api}/api/v1/uploads", json={"filename": "small.csv"}, timeout=60)
    if slot.status_code != 201:
        raise RuntimeError(f"POST /api/v1/uploads answered {slot.status_code}: {slot.text[:300]}")
    created = slot.json()
    upload, request_id = created["upload"], created["requestId"]
    stored = requests.post(
        upload["url"], data=list(upload["fields"].items()), files={"file": ("small.csv", body, "text/csv")}, timeout=300
    )
    landed_wall, landed = time.time(), time.perf_counter()
    if stored.status_code not in (200, 201, 204):
        raise RuntimeError(f"the S3 POST answered {stored.status_code}: {stored.text[:300]}")
    counter = _product_counter(request_id)
    images = products * IMAGES_PER_PRODUCT
    listed_s = None
    status: dict[str, Any] = {}
    while time.perf_counter() - landed < cap_s:
        status = session.get(f"{api}{created['statusUrl']}", params={"limit": 1}, timeout=60).json()
        if listed_s is None and counter is not None and counter() >= products:
            listed_s = time.perf_counter() - landed
        if status["status"] in FINAL:
            break
        time.sleep(POLL_S)
    seconds = time.perf_counter() - landed
    completed_at = status.get("completedAt")
    completed = status.get("status") in ("COMPLETED", "COMPLETED_WITH_ERRORS") and bool(completed_at)
    if completed:
        seconds = datetime.fromisoformat(completed_at).timestamp() - landed_wall
        listed_s = listed_s if listed_s is not None else seconds
    done = (status.get("succeeded") or 0) + (status.get("failed") or 0)
    return {
        "request_id": request_id,
        "products": products,
        "images": images,
        "csv_bytes": len(body),
        "status": status.get("status"),
        "completed": completed,
        "succeeded": status.get("succeeded"),
        "failed": status.get("failed"),
        "images_done": done,
        "seconds": seconds,
        "images_per_s": (images if completed else done) / seconds if seconds > 0 else 0.0,
        "listed_s": listed_s,
        "products_listed": counter() if counter is not None else None,
    }


def _cpu_by_part(cpu: dict[str, float]) -> dict[str, float]:
    """CPU seconds by part: each function's environments together, the emulators, the cloud's own process."""
    parts: dict[str, float] = {}
    for name, value in cpu.items():
        if name.startswith(FUNCTION_PID_PREFIX):
            name = name.removeprefix(FUNCTION_PID_PREFIX).split("#")[0] + " fn environments"
        elif name == "self":
            name = "the bench and cloud process (gateway, runners, image host)"
        parts[name] = parts.get(name, 0.0) + value
    return dict(sorted(parts.items(), key=lambda item: -item[1]))


def small_rows(small: dict[str, Any]) -> list[list[str]]:
    from bench.report import fmt_num, verdict

    rows = []
    for key, run in small["runs"].items():
        ended = "completed" if run["completed"] else f"{run['images_done']:,} of {run['images']:,} done (cap)"
        listed = f"{run['listed_s']:.1f} s" if run["listed_s"] is not None else "not all"
        rows.append(
            [
                f"small images: {int(key):,} products x {small['images_per_product']}",
                f"{run['images_per_s']:.1f} images/s over {run['seconds']:.0f} s ({ended}); all listed after {listed}",
                "",
                "-",
                "-",
            ]
        )
    largest = small["runs"][str(small["sizes"][-1])]
    steps = largest.get("steps", {})
    for label, value in steps.get("stage_ms_mean", {}).items():
        rows.append([f"  per image ({int(largest['products']):,} products): {label}", f"{value:.1f} ms", "", "-", "-"])
    if steps:
        rows.append(
            [
                "  process fn per image: invocation wall / CPU",
                f"{steps['process_wall_ms_per_image']:.1f} / {steps['process_cpu_ms_per_image']:.1f} ms "
                f"({steps['images_per_invocation']:.1f} images per invocation)",
                "",
                "-",
                "-",
            ]
        )
    for label, value in _cpu_by_part(largest.get("cpu_s", {})).items():
        per_image = 1000 * value / max(1, largest["images_done"])
        rows.append([f"  CPU: {label}", f"{value:.1f} s ({per_image:.1f} ms per image done)", "", "-", "-"])
    for target in small["targets"]:
        rows.append(
            [f"  {target['name']}", fmt_num(target["actual"], digits=2), "", target["target"], verdict(target["met"])]
        )
    return rows
