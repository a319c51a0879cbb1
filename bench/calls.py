"""Requests per image (issue 17): the calls one catalogue makes to each service, counted, and what a million
images would cost at AWS's list prices (bench.prices).

One local cloud configured as deployed (powertools' metrics on, log level INFO, so the functions write to
stdout what CloudWatch Logs would ingest), a catalogue of P products x 2 small JPEGs (`bench.small`'s, through
the presigned route) after a small unmeasured one. Counted between the file landing and `completedAt`:

- every AWS and MongoDB call of every execution environment, by function, service and operation
  (`bench.service_calls`, installed by the probe in each environment), and of the event-source runners in this
  process (Lambda's own SQS pollers, whose receives and deletes AWS bills to the account);
- the bytes the functions wrote to stdout (CloudWatch Logs ingestion; Lambda adds its START/END/REPORT lines,
  counted per invocation in bench.prices);
- every invocation's wall time by function (what Lambda bills, with the function's memory).

Targets: the process function's DynamoDB calls and MongoDB calls per image, each <= 0.3 (batches of 10)."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.cloud import local_cloud
from bench.pipeline import PROBE_DIR_VARIABLE, InvocationRecord
from bench.prices import PRICES_AS_OF, REGION, cost_per_million, with_photo_time
from bench.service_calls import ServiceCalls, between, by_service, read_totals
from bench.small import API_KEY, IMAGES_PER_PRODUCT, _one, catalogue, make_images
from infra.topology import TOPOLOGY
from localcloud.source_host import SourceHost

PRODUCTS = 500
WARM_UP = 20
TARGET_CALLS_PER_IMAGE = 0.30
# Calls the deployed system does not pay for: the emulation's S3-notification queue (S3 invokes the ingest
# function itself) and the stream runner's reads (Lambda reads a DynamoDB stream for its trigger at no charge).
NOTIFICATIONS_QUEUE = f"{TOPOLOGY.uploads_bucket}-events"


def billed(key: str) -> bool:
    service, _, rest = key.partition(".")
    return service != "dynamodb-streams" and not (service == "sqs" and rest.endswith(f"@{NOTIFICATIONS_QUEUE}"))


Log = Callable[[str], None]


def run_calls(log: Log, *, products: int = PRODUCTS, cap_s: float = 300, workers: int | None = None) -> dict[str, Any]:
    cloud_workers = workers or 2 * (os.cpu_count() or 1)
    # This process's AWS calls: the event-source runners' clients are built after it (its MongoDB calls are the
    # bench's own product counting).
    runners = ServiceCalls().install(mongodb=False)
    with tempfile.TemporaryDirectory(prefix="ips-bench-calls-") as scratch:
        folder = Path(scratch) / "images"
        folder.mkdir()
        names = make_images(folder)
        probe = Path(scratch) / "probe"
        probe.mkdir()
        os.environ[PROBE_DIR_VARIABLE] = str(probe)
        try:
            with SourceHost(folder) as host:
                host.distinct_queries = True
                options: dict[str, Any] = {
                    "throttle_rate": 1000,
                    "throttle_burst": 1000,
                    "metrics_disabled": False,  # as deployed: EMF lines on stdout
                    "log_level": "INFO",  # powertools' default, which the stack keeps
                    "environment_setup": "bench.pipeline:install_probe",
                    "passthrough": (PROBE_DIR_VARIABLE,),  # where the probe writes
                }
                state = Path(scratch) / "state"
                with local_cloud(host.origin, cloud_workers, state, **options) as cloud:
                    session = requests.Session()
                    session.headers["x-api-key"] = API_KEY
                    api = cloud.gateway.url
                    _one(session, api, catalogue(WARM_UP, host.url, names, series="warm"), WARM_UP, cap_s)
                    stdout = state / "functions-stdout.log"
                    before = _reading(cloud, probe, runners, stdout)
                    run = _one(session, api, catalogue(products, host.url, names, series="calls"), products, cap_s)
                    after = _reading(cloud, probe, runners, stdout)
        finally:
            os.environ.pop(PROBE_DIR_VARIABLE, None)
    result = summarise(run, before, after)
    log(
        f"calls: {run['images_done']:,} images; per image: "
        + ", ".join(f"{service} {count:.2f}" for service, count in result["per_image_by_service"].items())
    )
    return result


def _reading(cloud: Any, probe: Path, runners: ServiceCalls, stdout: Path) -> dict[str, Any]:
    """Running totals now: calls by environment (with its function), the runners', stdout's size, invocations."""
    functions = {pid: name for name, pool in cloud.functions.items() for pid in pool.pids()}
    return {
        "calls": {pid: (functions.get(pid, "?"), totals) for pid, totals in read_totals(probe).items()},
        "runners": runners.totals(),
        "stdout_bytes": stdout.stat().st_size if stdout.exists() else 0,
        "invocations": {pid: _invocations(probe, pid) for pid in functions},
        "functions": functions,
    }


def _invocations(probe: Path, pid: int) -> list[InvocationRecord]:
    """The environment's invocation records, in the order it wrote them."""
    path = probe / f"{pid}.invocations.jsonl"
    if not path.exists():
        return []
    return [InvocationRecord(**json.loads(line)) for line in path.read_text().splitlines() if line]


def summarise(run: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    images = max(1, run["images_done"])
    by_function: dict[str, Counter[str]] = {}
    for pid, (function, totals) in after["calls"].items():
        earlier = before["calls"].get(pid, (function, {}))[1]
        by_function.setdefault(function, Counter()).update(between(earlier, totals))
    by_function["event-source runners (Lambda's pollers)"] = between(before["runners"], after["runners"])
    every: Counter[str] = Counter()
    for calls in by_function.values():
        every.update(calls)
    services = by_service(every)
    billed_calls = {key: count for key, count in every.items() if billed(key)}
    billed_services = by_service(Counter(billed_calls))
    process = by_service(by_function.get("process", Counter()))
    lambda_time = _lambda_time(before, after)
    process_dynamodb = process.get("dynamodb", 0) / images
    process_mongodb = process.get("mongodb", 0) / images
    return {
        "images": run["images_done"],
        "products": run["products"],
        "images_per_product": IMAGES_PER_PRODUCT,
        "completed": run["completed"],
        "seconds": run["seconds"],
        "calls_by_function": {function: dict(sorted(calls.items())) for function, calls in by_function.items()},
        "per_image_by_service": {service: count / images for service, count in sorted(services.items())},
        "billed_per_image_by_service": {service: count / images for service, count in sorted(billed_services.items())},
        "billed_calls": dict(sorted(billed_calls.items())),
        "process_per_image_by_service": {service: count / images for service, count in sorted(process.items())},
        "log_bytes": after["stdout_bytes"] - before["stdout_bytes"],
        "log_bytes_per_image": (after["stdout_bytes"] - before["stdout_bytes"]) / images,
        "lambda": {
            function: {**figures, "per_image": _per(figures, images)} for function, figures in lambda_time.items()
        },
        "cost_per_million_usd": cost_per_million(
            billed_calls, images, lambda_time, after["stdout_bytes"] - before["stdout_bytes"]
        ),
        "targets": [
            {
                "name": "process fn DynamoDB calls per image (batches of 10)",
                "target": f"<= {TARGET_CALLS_PER_IMAGE:.2f}",
                "actual": process_dynamodb,
                "met": process_dynamodb <= TARGET_CALLS_PER_IMAGE,
            },
            {
                "name": "process fn MongoDB calls per image (batches of 10)",
                "target": f"<= {TARGET_CALLS_PER_IMAGE:.2f}",
                "actual": process_mongodb,
                "met": process_mongodb <= TARGET_CALLS_PER_IMAGE,
            },
        ],
    }


def _lambda_time(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per function, the invocations in the window and their wall seconds (what Lambda bills by duration)."""
    memory = {function.name: function.memory_mb for function in TOPOLOGY.functions}
    figures: dict[str, dict[str, float]] = {}
    for pid, function in after["functions"].items():
        records = after["invocations"][pid][len(before["invocations"].get(pid, [])) :]
        entry = figures.setdefault(function, {"invocations": 0, "wall_s": 0.0, "memory_mb": memory.get(function, 0)})
        entry["invocations"] += len(records)
        entry["wall_s"] += sum(record.wall_s for record in records)
    return {function: entry for function, entry in figures.items() if entry["invocations"]}


def _per(figures: dict[str, float], images: int) -> dict[str, float]:
    return {"invocations": figures["invocations"] / images, "wall_ms": 1000 * figures["wall_s"] / images}


def million_images(calls: dict[str, Any], pipeline: Any) -> dict[str, Any]:
    """The cost of 1,000,000 images at list prices: small images as measured here, and photos (the process
    function's wall time per photo from the pipeline part, when it ran)."""
    costs: dict[str, Any] = {
        "region": REGION,
        "prices_as_of": PRICES_AS_OF,
        "small images": calls["cost_per_million_usd"],
    }
    if isinstance(pipeline, dict) and pipeline.get("breakdown", {}).get("process_wall_ms_per_image"):
        photo_ms = pipeline["breakdown"]["process_wall_ms_per_image"]
        lambda_time = with_photo_time(calls["lambda"], calls["images"], photo_ms)
        costs["photos"] = cost_per_million(calls["billed_calls"], calls["images"], lambda_time, calls["log_bytes"])
        costs["photo_process_wall_ms"] = photo_ms
    return costs


def calls_rows(calls: dict[str, Any]) -> list[list[str]]:
    from bench.report import fmt_num, verdict

    rows = [
        [
            f"calls per image ({calls['images']:,} small images, all functions)",
            ", ".join(f"{service} {count:.2f}" for service, count in calls["per_image_by_service"].items()),
            "",
            "-",
            "-",
        ],
        [
            "  process fn alone",
            ", ".join(f"{service} {count:.2f}" for service, count in calls["process_per_image_by_service"].items()),
            "",
            "-",
            "-",
        ],
        ["  stdout (CloudWatch Logs) per image", f"{calls['log_bytes_per_image']:.0f} bytes", "", "-", "-"],
    ]
    for function, figures in calls["lambda"].items():
        per = figures["per_image"]
        rows.append(
            [
                f"  Lambda {function} per image",
                f"{per['invocations']:.3f} invocations, {per['wall_ms']:.1f} ms at {figures['memory_mb']:.0f} MB",
                "",
                "-",
                "-",
            ]
        )
    costs = calls["cost_per_million_usd"]
    rows.append(
        [
            "  1,000,000 small images at AWS list prices",
            f"${costs['total']:,.2f} ("
            + ", ".join(f"{name} ${value:,.2f}" for name, value in costs.items() if name != "total")
            + ")",
            "",
            "-",
            "-",
        ]
    )
    for target in calls["targets"]:
        rows.append([target["name"], "", fmt_num(target["actual"], digits=2), target["target"], verdict(target["met"])])
    return rows
