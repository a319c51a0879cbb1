"""Upload benchmark: how the time to accept a CSV grows with its size.

Accept latencies, on a local cloud with workers=0 (nothing consumes the queue, so the accept path is measured
alone, not mixed with the fan-out and processing of earlier uploads), in rounds that upload every size in an
order rotated per round:
- direct path: POST /api/v1/upload (multipart, field `file`) of CSVs of 100, 1,000 and 10,000 rows (10,000 is
  the direct path's row cap); latency until the 202;
- presigned path (when POST /api/v1/uploads answers 201), 100 and 100,000 rows: the 201 answer + the multipart
  POST of the file to S3 (every `fields` entry first, the file last as `file`); then, waited for before the next
  upload, the time until the status no longer says WAITING_FOR_UPLOAD (validated, chunks queued: the ingestion
  has its own runner, which workers=0 does not stop).

Fan-out, on a cloud with workers=2 (the workers expand the chunks): the time until every product record exists,
for 100 rows (several times, the queue emptied and the workers settled after each) and for 100,000 rows once,
watched for at most `big_cap_s` seconds (the local emulator's SQS makes a big fan-out quadratic).

Every CSV row has one image URL on a local server that answers 404 at once, so whatever processing follows costs
no compression."""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench.cloud import local_cloud
from bench.peers import NotFoundServer
from bench.stats import median, ratio, rotated, spread
from localcloud.settings import KeyImageQuota

API_KEY = "local-dev-key"
DIRECT_SIZES = (100, 1_000, 10_000)
PRESIGNED_SIZES = (100, 100_000)
TARGET_RATIO = 3.0

Log = Callable[[str], None]


def rows_csv(rows: int, url_base: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["S. No.", "Product Name", "Input Image Urls"])
    for row in range(1, rows + 1):
        writer.writerow([row, f"Bench product {row}", f"{url_base}/missing/{row}.jpg"])
    return out.getvalue().encode()


@contextmanager
def _cloud(origin: str, workers: int, state: Path, log: Log) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yields the API's URL and a function that empties the images queue."""
    # No throttling in the way of back-to-back uploads and status polls (the usage plan is not what is measured),
    # and no image quota: with workers=0 nothing ends, so the 100,000-row rounds would fill the in-flight cap.
    unlimited = KeyImageQuota(API_KEY, per_day=10**9, in_flight=10**9)
    with local_cloud(
        origin, workers, state, throttle_rate=1000, throttle_burst=1000, image_quotas=[unlimited]
    ) as cloud:
        try:
            yield cloud.gateway.url, lambda: _drop_queued_work(cloud)
        finally:
            _drop_queued_work(cloud)
            log("upload: stopping the local cloud")


def _drop_queued_work(cloud: Any) -> None:
    """Empty the chunks and images queues once a measurement is done: the workers stop after their current batch
    instead of working through its remaining fan-out and 404s (under the next measurement, or while the cloud
    stops)."""
    import boto3

    if cloud.resources is not None:
        for url in (cloud.resources.chunks_queue_url, cloud.resources.queue_url):
            try:
                boto3.client("sqs").purge_queue(QueueUrl=url)
            except Exception as exc:  # teardown only: the measurement is done
                logging.getLogger(__name__).warning("could not purge %s: %s", url, exc)


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["x-api-key"] = API_KEY
    return session


def run_upload(rounds: int, log: Log, *, presigned: bool = True, big_cap_s: float = 45) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ips-bench-upload-") as scratch, NotFoundServer() as missing:
        bodies = {rows: rows_csv(rows, missing.url) for rows in DIRECT_SIZES}
        presigned_bodies = {rows: rows_csv(rows, missing.url) for rows in PRESIGNED_SIZES}
        result: dict[str, Any] = {"url_server": "a local server answering 404 at once"}
        # Accept latencies: no consumers (workers=0), so nothing but the accept path (and, for the presigned
        # path, the S3-notified ingestion, which has its own runner) uses the machine.
        with _cloud(missing.origin, 0, Path(scratch) / "accept", log) as (api, _):
            direct = _direct(api, bodies, rounds, log)
            result["direct"] = direct
            result["ratio_10k_vs_100"] = ratio(direct["10000"]["accept_s_median"], direct["100"]["accept_s_median"])
            if presigned:
                result["presigned"] = _presigned_accept(api, presigned_bodies, rounds, log)
        # Fan-out: the chunks are expanded into products and image tasks by the workers (workers=2).
        if presigned and result["presigned"].get("available"):
            with _cloud(missing.origin, 2, Path(scratch) / "fan-out", log) as (api, purge):
                result["presigned"]["fan_out"] = _presigned_fan_out(
                    api, presigned_bodies, rounds, log, big_cap_s, purge
                )
            accept = result["presigned"]
            small, big = (str(rows) for rows in PRESIGNED_SIZES)
            accept["ratio_100k_vs_100_accept"] = ratio(accept[big]["accept_s_median"], accept[small]["accept_s_median"])
    result["targets"] = [
        {
            "name": "upload accept 10k rows vs 100",
            "target": f"< {TARGET_RATIO:g}x",
            "actual": result["ratio_10k_vs_100"],
            "met": bool(result["ratio_10k_vs_100"] is not None and result["ratio_10k_vs_100"] < TARGET_RATIO),
        }
    ]
    return result


def _direct(api: str, bodies: dict[int, bytes], rounds: int, log: Log) -> dict[str, Any]:
    session = _session()
    # Warm-up: first-use costs (imports, clients, connections) are not the CSV's size.
    _post_direct(session, api, bodies[DIRECT_SIZES[0]])
    samples: dict[int, list[float]] = {rows: [] for rows in DIRECT_SIZES}
    for number in range(rounds):
        for rows in rotated(DIRECT_SIZES, number):
            samples[rows].append(_post_direct(session, api, bodies[rows]))
        log(
            f"upload: direct round {number + 1}/{rounds}: "
            + "  ".join(f"{rows} rows {samples[rows][-1] * 1000:.0f} ms" for rows in DIRECT_SIZES)
        )
    return {
        str(rows): {
            "rows": rows,
            "csv_bytes": len(bodies[rows]),
            "accept_s_median": median(samples[rows]),
            "accept_s": spread(samples[rows]),
        }
        for rows in DIRECT_SIZES
    }


def _post_direct(session: requests.Session, api: str, body: bytes) -> float:
    started = time.perf_counter()
    answer = session.post(f"{api}/api/v1/upload", files={"file": ("bench.csv", body, "text/csv")}, timeout=120)
    elapsed = time.perf_counter() - started
    if answer.status_code != 202:
        raise RuntimeError(f"direct upload answered {answer.status_code}: {answer.text[:300]}")
    return elapsed


def _presigned_accept(api: str, bodies: dict[int, bytes], rounds: int, log: Log) -> dict[str, Any]:
    """Accept latency (201 + S3 POST) and time to ingested, for each size, interleaved, each waited for."""
    session = _session()
    probe = session.post(f"{api}/api/v1/uploads", json={"filename": "probe.csv"}, timeout=30)
    if probe.status_code != 201:
        reason = f"POST /api/v1/uploads answered {probe.status_code}"
        log(f"upload: presigned path not available ({reason})")
        return {"available": False, "reason": reason}
    sizes = list(bodies)
    _presigned_once(session, api, bodies[sizes[0]], sizes[0], until="ingested")  # warm-up
    runs: dict[int, list[dict[str, Any]]] = {rows: [] for rows in sizes}
    for number in range(rounds):
        for rows in rotated(sizes, number):
            runs[rows].append(_presigned_once(session, api, bodies[rows], rows, until="ingested"))
        log(
            f"upload: presigned round {number + 1}/{rounds}: "
            + "  ".join(
                f"{rows} rows accept {runs[rows][-1]['accept_s'] * 1000:.0f} ms, "
                f"ingested {runs[rows][-1]['ingested_s']:.1f}s"
                for rows in sizes
            )
        )
    return {"available": True, **{str(rows): _presigned_summary(runs[rows], rows, len(bodies[rows])) for rows in sizes}}


def _presigned_fan_out(
    api: str, bodies: dict[int, bytes], rounds: int, log: Log, big_cap_s: float, purge: Callable[[], None]
) -> dict[str, Any]:
    """Time until every product record exists: small uploads several times (the queue emptied after each, so
    their 404s are not processed under the next one), the big one once, watched for at most `big_cap_s`."""
    session = _session()
    small, big = PRESIGNED_SIZES
    runs = []
    for number in range(rounds + 1):  # the first is a warm-up
        run = _presigned_once(session, api, bodies[small], small, until="products", cap_s=120)
        purge()
        _settle(session, run["status_url"])
        if number:
            runs.append(run)
    result: dict[str, Any] = {str(small): _presigned_summary(runs, small, len(bodies[small]))}
    run = _presigned_once(session, api, bodies[big], big, until="products", cap_s=big_cap_s)
    fanning_s = (run["products_s"] or run["waited_s"]) - (run["ingested_s"] or 0.0)
    result[str(big)] = {
        **_presigned_summary([run], big, len(bodies[big])),
        "products_seen": run["products_seen"],
        "waited_s": run["waited_s"],
        "products_per_s": (run["products_seen"] or 0) / fanning_s if fanning_s > 0 else None,
    }
    done = f"{run['products_s']:.1f}s" if run["products_s"] else f"{run['products_seen']} after {run['waited_s']:.0f}s"
    log(
        f"upload: presigned fan-out: {small} rows all products in "
        f"{result[str(small)].get('products_s_median', float('nan')):.1f}s (median); {big} rows: {done}"
    )
    return result


def _presigned_summary(runs: list[dict[str, Any]], rows: int, size: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"rows": rows, "csv_bytes": size, "runs": len(runs)}
    for key in ("accept_s", "slot_s", "s3_post_s", "ingested_s", "products_s", "completed_s"):
        values = [run[key] for run in runs if run.get(key) is not None]
        if values:
            summary[f"{key}_median"] = median(values)
    return summary


def _presigned_once(
    session: requests.Session, api: str, body: bytes, rows: int, *, until: str, cap_s: float = 600
) -> dict[str, Any]:
    """One presigned upload; polls its status until `until` ("ingested": the file is validated and its chunks
    queued; "products": every product record exists), for at most `cap_s` seconds from the start (then
    `products_s` is None and `products_seen` says how far the fan-out got)."""
    started = time.perf_counter()
    slot = session.post(f"{api}/api/v1/uploads", json={"filename": "bench.csv"}, timeout=60)
    slot_s = time.perf_counter() - started
    if slot.status_code != 201:
        raise RuntimeError(f"POST /api/v1/uploads answered {slot.status_code}: {slot.text[:300]}")
    created = slot.json()
    upload = created["upload"]
    fields = list(upload["fields"].items())
    # S3 reads the form in order: every field first, the file last.
    stored = requests.post(upload["url"], data=fields, files={"file": ("bench.csv", body, "text/csv")}, timeout=300)
    accept_s = time.perf_counter() - started
    if stored.status_code not in (200, 201, 204):
        raise RuntimeError(f"the S3 POST answered {stored.status_code}: {stored.text[:300]}")
    status_url = f"{api}{created['statusUrl']}"
    request_id = created["requestId"]
    run: dict[str, Any] = {
        "status_url": status_url,
        "slot_s": slot_s,
        "s3_post_s": accept_s - slot_s,
        "accept_s": accept_s,
        "ingested_s": None,
        "products_s": None,
        "products_seen": None,
        "completed_s": None,
    }
    counter = _product_counter(request_id) if until == "products" else None
    while time.perf_counter() - started < cap_s:
        status = session.get(status_url, params={"limit": 1}, timeout=60).json()
        now = time.perf_counter() - started
        if status["status"] == "FAILED":
            raise RuntimeError(f"presigned request {request_id} FAILED: {status.get('error')}")
        if run["ingested_s"] is None and status.get("detail") != "WAITING_FOR_UPLOAD":
            run["ingested_s"] = now
        if run["ingested_s"] is not None and run["products_s"] is None and counter is not None:
            run["products_seen"] = counter()
            if run["products_seen"] >= rows:
                run["products_s"] = time.perf_counter() - started
        if status["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS"):
            run["completed_s"] = now
            run["products_s"] = run["products_s"] or now
            break
        if run["ingested_s"] is not None and (until == "ingested" or run["products_s"] is not None):
            break
        time.sleep(0.1)
    if until == "ingested" and run["ingested_s"] is None:
        raise RuntimeError(f"presigned request {request_id} was not ingested within {cap_s}s: {run}")
    run["waited_s"] = time.perf_counter() - started
    return run


def _settle(session: requests.Session, status_url: str, timeout_s: float = 60) -> None:
    """Wait until the request's counts stop moving: the batches the workers had taken before the queue was
    emptied are done, so the next measurement starts on idle workers."""
    deadline = time.perf_counter() + timeout_s
    last = None
    while time.perf_counter() < deadline:
        status = session.get(status_url, params={"limit": 1}, timeout=60).json()
        done = (status.get("succeeded") or 0) + (status.get("failed") or 0)
        if done == last:
            return
        last = done
        time.sleep(1.0)


def _product_counter(request_id: str) -> Callable[[], int] | None:
    """How many product records exist for the request. The status API pages products but does not count them,
    so this reads the catalog's collection directly (bench only); None when that is not possible."""
    try:
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]] = MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000)
        products = client[os.environ.get("MONGODB_DATABASE", "ips")]["products"]
    except Exception:
        return None
    return lambda: products.count_documents({"requestId": request_id})
