"""Pipeline benchmark: N images end to end through the local cloud, against the engine-only bound.

The local cloud runs in this process (LocalCloudConfig(workers=2) on free ports, state in a temporary folder),
the corpus is served by localcloud.source_host.SourceHost in a child process, and each round uploads one CSV of
N image URLs (the corpus JPEGs cycled, 4 per product) via POST /api/v1/upload, then polls
GET /api/v1/status/{id}?limit=1 until the request is COMPLETED (or COMPLETED_WITH_ERRORS / FAILED).

The N sources are distinct: each URL has its own `?v=`, which the host appends to the file's bytes, so no image
is reused by content (the request's `reused` count is recorded, and must be 0) and the pipeline compresses all
N. The bound is what the same number of workers can do with the engine alone: a pool of `workers` processes
calling compress_image on the same N sources' bytes (held in memory, the same suffixes appended). Rounds
alternate which of the two runs first; the ratio is the median pipeline throughput over the median bound
throughput.

For where the time goes, the run wraps (no code changed) the process function's handler (each invocation: wall
and CPU time, what Lambda bills), the two stages of each image (`prepare_image`, `store_output`), the engine call
and the I/O steps inside them: each execution environment (a child process) installs the wrappers when it starts
(`install_probe`, the local cloud's environment set-up hook) and appends one JSON line per image to a file in
the round's probe folder, which this process reads. It also reads the CPU time of every process involved."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import requests

from bench import CORPUS, bound
from bench.cloud import local_cloud
from bench.corpus import CorpusImage, jpegs, load_corpus
from bench.cpu import CpuMeter
from bench.peers import ImageServerProcess
from bench.service_calls import CALLS_SUFFIX, ServiceCalls
from bench.stats import cycle, median, percentile, ratio, spread

API_KEY = "local-dev-key"
IMAGES_PER_ROW = 4
TARGET_VS_BOUND = 0.75
TARGET_WALL_VS_COMPRESS = 1.30  # issue 17: wall time per distinct photo
FINAL = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED")

Log = Callable[[str], None]


@dataclass
class ImageRecord:
    request_id: str
    started: float  # wall clock (time.time): its prepare stage began
    ended: float  # its finish stage ended
    service_s: float  # from the one to the other (with the overlap, other images' stages run meanwhile)
    service_cpu_s: float  # CPU of its two stages, each in its own thread
    compress_s: float = 0.0  # compress_image wall time within it
    compress_cpu_s: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per wrapped step
    prepare_s: float = 0.0  # fetch (wait), reuse check, compression: the batch's compression lane
    finish_s: float = 0.0  # the S3 put (a store thread); the batch's record and count are not an image's


@dataclass
class InvocationRecord:
    """One invocation of the process function (what Lambda bills): wall and CPU time of its environment, and the
    images it prepared, by request."""

    started: float
    wall_s: float
    cpu_s: float  # the environment process's CPU (every thread) during the invocation
    images: dict[str, int] = field(default_factory=dict)


# Steps timed separately (wall time, in the thread that runs them): (module, attribute path, label).
STAGES = (
    ("ips.processing.image", "Prefetcher.fetch", "fetch (wait for the download)"),
    ("ips_adapters.aws", "S3BlobStore.put", "store output (S3 put)"),
    ("ips_adapters.mongo", "MongoCatalog.record_images", "record (MongoDB)"),
    ("ips_adapters.dynamodb", "DynamoLedger.count_many", "count (DynamoDB)"),
)
# Where the image stages are called from: each module's own name for them is wrapped.
STAGE_CALLERS = ("ips.processing.image", "ips.processing.service")


PROBE_DIR_VARIABLE = "IPS_BENCH_PROBE_DIR"
FUNCTION_PID_PREFIX = "function "  # CPU meter names of the functions' execution environments


def install_probe(handler_module: Any) -> None:
    """The local cloud's environment set-up hook (in each execution environment): time every image, for good."""
    folder = Path(os.environ[PROBE_DIR_VARIABLE])
    probe = Probe(
        sink=folder / f"{os.getpid()}.jsonl",
        invocation_sink=folder / f"{os.getpid()}.invocations.jsonl",
        calls=ServiceCalls().install(),
        calls_sink=folder / f"{os.getpid()}{CALLS_SUFFIX}",
    )
    probe.install(handler_module)
    (folder / "installed.json").write_text(json.dumps(probe.installed))


def read_probe(folder: Path) -> tuple[list[ImageRecord], list[str]]:
    """What every environment's probe wrote: the image records and the steps it could wrap."""
    records = [
        ImageRecord(**json.loads(line))
        for path in sorted(folder.glob("*.jsonl"))
        if not path.name.endswith(".invocations.jsonl")
        for line in path.read_text().splitlines()
        if line
    ]
    installed = folder / "installed.json"
    return records, json.loads(installed.read_text()) if installed.exists() else []


def read_invocations(folder: Path) -> list[InvocationRecord]:
    return [
        InvocationRecord(**json.loads(line))
        for path in sorted(folder.glob("*.invocations.jsonl"))
        for line in path.read_text().splitlines()
        if line
    ]


def _image_key(task: Any) -> tuple[Any, ...]:
    return (getattr(task, "request_id", "?"), getattr(task, "row", 0), getattr(task, "index", 0), id(task))


@dataclass
class Probe:
    """Wraps, in an execution environment of the process function: its handler (each invocation), the two
    stages of an image (`prepare_image`, `store_output`, which may run in different threads), the engine call
    and the I/O steps. A stage's thread carries its image's record while it runs."""

    records: list[ImageRecord] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    sink: Path | None = None  # where each image record is appended as a JSON line
    invocation_sink: Path | None = None  # and each invocation record
    calls: ServiceCalls | None = None  # the environment's calls to each service, written after each invocation
    calls_sink: Path | None = None
    _current: threading.local = field(default_factory=threading.local)
    _sink_lock: threading.Lock = field(default_factory=threading.Lock)
    _prepared: dict[tuple[Any, ...], ImageRecord] = field(default_factory=dict)
    _invocation_images: dict[str, int] = field(default_factory=dict)

    def install(self, handler_module: Any) -> None:
        """Put the wrappers in, for the life of the environment."""
        import importlib

        patches: list[tuple[Any, str, Any]] = []
        if hasattr(handler_module, "lambda_handler"):
            patches.append((handler_module, "lambda_handler", self._wrap_invocation(handler_module.lambda_handler)))
        for module_name in STAGE_CALLERS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for name, wrap in (("prepare_image", self._wrap_prepare), ("store_output", self._wrap_finish)):
                if hasattr(module, name):
                    patches.append((module, name, wrap(getattr(module, name))))
        from ips.processing import image

        if hasattr(image, "compress_image"):
            patches.append((image, "compress_image", self._wrap_compress(image.compress_image)))
        for module_name, path, label in STAGES:
            try:
                target: Any = importlib.import_module(module_name)
                *owners, name = path.split(".")
                for owner in owners:
                    target = getattr(target, owner)
                patches.append((target, name, self._wrap_stage(getattr(target, name), label)))
            except (ImportError, AttributeError):
                continue  # the code moved on: that step is simply not broken out
        for target, name, wrapper in patches:
            setattr(target, name, wrapper)
            label = f"{_qualified(target)}.{name}"
            if label not in self.installed:
                self.installed.append(label)

    def _write(self, sink: Path | None, document: dict[str, Any]) -> None:
        if sink is not None:
            with self._sink_lock, sink.open("a") as out:
                out.write(json.dumps(document) + "\n")

    def _keep(self, record: ImageRecord) -> None:
        self.records.append(record)
        self._write(self.sink, dataclasses.asdict(record))

    def _wrap_invocation(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def lambda_handler(event: Any, context: Any) -> Any:
            with self._sink_lock:
                self._invocation_images = {}
            started, wall, cpu = time.time(), time.perf_counter(), time.process_time()
            try:
                return original(event, context)
            finally:
                record = InvocationRecord(
                    started, time.perf_counter() - wall, time.process_time() - cpu, dict(self._invocation_images)
                )
                self._write(self.invocation_sink, dataclasses.asdict(record))
                if self.calls is not None and self.calls_sink is not None:
                    self.calls.save(self.calls_sink)

        return lambda_handler

    def _wrap_stage(self, original: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            record = getattr(self._current, "record", None)
            if record is None:  # not inside an image's stage (an upload's S3 put, another thread)
                return original(*args, **kwargs)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                record.stages[label] = record.stages.get(label, 0.0) + time.perf_counter() - started

        return timed

    def _wrap_prepare(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def prepare_image(task: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self._current, "record", None) is not None:  # called by a wrapped caller: counted there
                return original(task, *args, **kwargs)
            record = ImageRecord(getattr(task, "request_id", "?"), time.time(), 0.0, 0.0, 0.0)
            with self._sink_lock:
                self._invocation_images[record.request_id] = self._invocation_images.get(record.request_id, 0) + 1
            self._current.record = record
            wall, cpu = time.perf_counter(), time.thread_time()
            done = False
            try:
                prepared = original(task, *args, **kwargs)
                done = True
                return prepared
            finally:
                record.prepare_s = time.perf_counter() - wall
                record.service_cpu_s += time.thread_time() - cpu
                self._current.record = None
                if done:
                    with self._sink_lock:
                        self._prepared[_image_key(task)] = record
                else:  # it raised (RetryLater, a crash): no finish follows
                    record.ended = time.time()
                    record.service_s = record.ended - record.started
                    self._keep(record)

        return prepare_image

    def _wrap_finish(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def finish_image(task: Any, *args: Any, **kwargs: Any) -> Any:
            with self._sink_lock:
                record = self._prepared.pop(_image_key(task), None)
            if record is None or getattr(self._current, "record", None) is not None:
                return original(task, *args, **kwargs)
            self._current.record = record
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(task, *args, **kwargs)
            finally:
                record.finish_s = time.perf_counter() - wall
                record.service_cpu_s += time.thread_time() - cpu
                record.ended = time.time()
                record.service_s = record.ended - record.started
                self._current.record = None
                self._keep(record)

        return finish_image

    def _wrap_compress(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def compress_image(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                record = getattr(self._current, "record", None)
                if record is not None:
                    record.compress_s += time.perf_counter() - wall
                    record.compress_cpu_s += time.thread_time() - cpu

        return compress_image


def _qualified(target: Any) -> str:
    if isinstance(target, type):
        return f"{target.__module__}.{target.__qualname__}"
    return str(target.__name__)


def products_csv(urls: list[str], per_row: int = IMAGES_PER_ROW) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["S. No.", "Product Name", "Input Image Urls"])
    for row, start in enumerate(range(0, len(urls), per_row), start=1):
        writer.writerow([row, f"Bench product {row}", ",".join(urls[start : start + per_row])])
    return out.getvalue().encode()


def _parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def run_pipeline(
    n: int, rounds: int, log: Log, *, workers: int = 2, cloud_workers: int | None = None, poll_s: float = 0.5
) -> dict[str, Any]:
    """`workers` bound processes; the local cloud runs `cloud_workers` concurrent invocations (default the same)."""
    cloud_workers = cloud_workers or workers
    images = jpegs(load_corpus())
    mix = cycle(images, n)
    # Distinct sources (bench.bound's `name?query`); the warm-up request's are apart, so nothing is reused.
    sources = [f"{image.name}?v={number}" for number, image in enumerate(mix)]
    warm_up = [f"{image.name}?v=warm-{number}" for number, image in enumerate(mix[: workers * 4])]
    bound_rounds: list[dict[str, Any]] = []
    pipeline_rounds: list[dict[str, Any]] = []
    installed: list[str] = []
    pool_paths = [str(image.path) for image in images]
    with (
        tempfile.TemporaryDirectory(prefix="ips-bench-pipeline-") as scratch,
        ImageServerProcess(CORPUS) as server,
        ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=bound.load, initargs=(pool_paths,)
        ) as pool,
    ):
        list(pool.map(bound.compress, warm_up[: workers * 2]))  # start and warm every pool worker
        urls = [f"{server.url}/{source}" for source in sources]
        for number in range(rounds):
            order = ("bound", "pipeline") if number % 2 == 0 else ("pipeline", "bound")
            for kind in order:
                if kind == "bound":
                    result = _bound_round(pool, sources, CpuMeter({"image_server": _pid(server)}))
                    bound_rounds.append(result)
                else:
                    state = Path(scratch) / f"round-{number}"
                    with _cloud(server, cloud_workers, state) as (api, pids, probe):
                        session = requests.Session()
                        session.headers["x-api-key"] = API_KEY
                        # Connections, clients and first-use costs, as a warm Lambda container has them.
                        warm_urls = [f"{server.url}/{source}" for source in warm_up]
                        _request(session, api, warm_urls, poll_s, CpuMeter(pids), probe)
                        result = _request(session, api, urls, poll_s, CpuMeter(pids), probe)
                        installed = read_probe(probe)[1]
                    pipeline_rounds.append(result)
                log(
                    f"pipeline: round {number + 1}/{rounds} {kind:<8}: "
                    f"{result['images_per_s']:6.2f} images/s ({result['seconds']:.1f}s)"
                )
    summary = _summarise(n, workers, mix, sources, bound_rounds, pipeline_rounds, installed)
    summary["cloud_workers"] = cloud_workers
    return summary


def _pid(server: ImageServerProcess) -> int:
    return server.process.pid if server.process is not None else 0


@contextmanager
def _cloud(server: ImageServerProcess, workers: int, state: Path) -> Iterator[tuple[str, dict[str, int], Path]]:
    """A fresh local cloud whose execution environments time every image (`install_probe`); yields its URL, the
    pids whose CPU is counted (its servers and every function's environments) and the probe folder."""
    probe = state / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    os.environ[PROBE_DIR_VARIABLE] = str(probe)
    try:
        with local_cloud(
            server.origin,
            workers,
            state,
            environment_setup=f"{__name__}:install_probe",
            passthrough=(PROBE_DIR_VARIABLE,),
        ) as cloud:
            cloud.functions["process"].warm(workers)  # all of them now, so that their CPU is counted from the start
            pids = {"image_server": _pid(server)}
            pids.update({child.name: child.process.pid for child in cloud.children if child.process is not None})
            for name, function in cloud.functions.items():
                pids.update({f"{FUNCTION_PID_PREFIX}{name}#{n}": pid for n, pid in enumerate(function.pids())})
            yield cloud.gateway.url, pids, probe
    finally:
        os.environ.pop(PROBE_DIR_VARIABLE, None)


def _bound_round(pool: ProcessPoolExecutor, names: list[str], meter: CpuMeter) -> dict[str, Any]:
    meter.start()
    started = time.perf_counter()
    results = list(pool.map(bound.compress, names, chunksize=1))
    seconds = time.perf_counter() - started
    cpu = meter.stop()
    return {
        "seconds": seconds,
        "images_per_s": len(names) / seconds,
        "compress_s": sum(wall for wall, _ in results),
        "compress_cpu_s": sum(cpu_s for _, cpu_s in results),
        "other_cpu_s": cpu,  # what else ran meanwhile (this process, the idle image server)
    }


def _request(
    session: requests.Session, api: str, urls: list[str], poll_s: float, meter: CpuMeter, probe: Path
) -> dict[str, Any]:
    body = products_csv(urls)
    meter.start()
    started_wall, started = time.time(), time.perf_counter()
    answer = session.post(f"{api}/api/v1/upload", files={"file": ("bench.csv", body, "text/csv")}, timeout=120)
    accept_s = time.perf_counter() - started
    if answer.status_code != 202:
        raise RuntimeError(f"upload answered {answer.status_code}: {answer.text[:500]}")
    accepted = answer.json()
    request_id = accepted["requestId"]
    deadline = started + 600
    polls = 0
    while True:
        status = session.get(f"{api}/api/v1/status/{request_id}", params={"limit": 1}, timeout=60).json()
        polls += 1
        if status["status"] in FINAL:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"request {request_id} did not complete in 600s: {status['status']}")
        time.sleep(poll_s)
    observed_s = time.perf_counter() - started
    cpu = meter.stop()
    completed_at = _parse_time(status.get("completedAt"))
    seconds = completed_at - started_wall if completed_at else observed_s
    records = [record for record in read_probe(probe)[0] if record.request_id == request_id]
    # The invocations that prepared this request's images and no other's (the warm-up request's are apart).
    invocations = [call for call in read_invocations(probe) if set(call.images) == {request_id}]
    return {
        "request_id": request_id,
        "images": len(urls),
        "status": status["status"],
        "succeeded": status.get("succeeded"),
        "failed": status.get("failed"),
        "reused": status.get("reused"),
        "accept_s": accept_s,
        "seconds": seconds,
        "observed_s": observed_s,
        "images_per_s": len(urls) / seconds,
        "polls": polls,
        "cpu_s": cpu,
        "started_wall": started_wall,
        "completed_wall": completed_at or started_wall + observed_s,
        "records": records,
        "invocations": invocations,
    }


def _summarise(
    n: int,
    workers: int,
    mix: list[CorpusImage],
    sources: list[str],
    bound_rounds: list[dict[str, Any]],
    pipeline_rounds: list[dict[str, Any]],
    instrumented: list[str],
) -> dict[str, Any]:
    pipeline_ips = median(r["images_per_s"] for r in pipeline_rounds)
    bound_ips = median(r["images_per_s"] for r in bound_rounds)
    pipeline_ratio = ratio(pipeline_ips, bound_ips)
    rounds = []
    for result in pipeline_rounds:
        rounds.append(_round_breakdown(result, workers))
    latency = _latency(pipeline_rounds)
    breakdown = {
        key: median(r[key] for r in rounds if r[key] is not None)
        for key in rounds[0]
        if key != "cpu_share" and any(r[key] is not None for r in rounds)
    }
    overlap = breakdown.get("process_wall_vs_compress")
    cpu_share = {key: median(r["cpu_share"][key] for r in rounds) for key in rounds[0]["cpu_share"]}
    bound_compress_per_image = median(r["compress_s"] / n for r in bound_rounds)
    return {
        "images": n,
        "distinct_files": len({image.name for image in mix}),
        "distinct_sources": len(set(sources)),
        "reused_per_round": [r["reused"] for r in pipeline_rounds],
        "megapixels": sum(image.pixels for image in mix) / 1e6,
        "images_per_row": IMAGES_PER_ROW,
        "workers": workers,
        "rounds": len(pipeline_rounds),
        "images_per_s": pipeline_ips,
        "engine_bound_images_per_s": bound_ips,
        "ratio_vs_engine_bound": pipeline_ratio,
        "process_wall_vs_compress": overlap,
        "ratio_per_round": spread(
            [p["images_per_s"] / b["images_per_s"] for p, b in zip(pipeline_rounds, bound_rounds, strict=True)]
        ),
        "pipeline_seconds": [r["seconds"] for r in pipeline_rounds],
        "bound_seconds": [r["seconds"] for r in bound_rounds],
        "statuses": [r["status"] for r in pipeline_rounds],
        "latency": latency,
        "breakdown": breakdown,
        "cpu_share": cpu_share,
        "bound_compress_ms_per_image": bound_compress_per_image * 1000,
        "bound_other_cpu_s": {
            key: median(r["other_cpu_s"][key] for r in bound_rounds) for key in bound_rounds[0]["other_cpu_s"]
        },
        "instrumented": instrumented,
        "targets": [
            {
                "name": "pipeline vs engine bound",
                "target": f">= {TARGET_VS_BOUND:.0%}",
                "actual": pipeline_ratio,
                "met": bool(pipeline_ratio is not None and pipeline_ratio >= TARGET_VS_BOUND),
            },
            {
                "name": "pipeline images reused (every source distinct)",
                "target": "= 0",
                "actual": max((r["reused"] or 0 for r in pipeline_rounds), default=None),
                "met": all(r["reused"] == 0 for r in pipeline_rounds),
            },
            {
                "name": "process wall per image vs compression",
                "target": f"<= {TARGET_WALL_VS_COMPRESS:.2f}x",
                "actual": overlap,
                "met": bool(overlap is not None and overlap <= TARGET_WALL_VS_COMPRESS),
            },
        ],
    }


def _latency(pipeline_rounds: list[dict[str, Any]]) -> dict[str, Any]:
    records = [record for result in pipeline_rounds for record in result["records"]]
    if not records:
        return {"per_image": False}
    end_to_end = [record.ended - result["started_wall"] for result in pipeline_rounds for record in result["records"]]
    service = [record.service_s for record in records]
    return {
        "per_image": True,
        "service_p50_ms": percentile(service, 50) * 1000,
        "service_p95_ms": percentile(service, 95) * 1000,
        "end_to_end_p50_s": percentile(end_to_end, 50),
        "end_to_end_p95_s": percentile(end_to_end, 95),
        "request_s": median(r["seconds"] for r in pipeline_rounds),
        "accept_s": median(r["accept_s"] for r in pipeline_rounds),
    }


def _stage_means(records: list[ImageRecord]) -> dict[str, float]:
    """Mean wall milliseconds per image of each timed step of its stages, and of what is left."""
    if not records:
        return {}
    labels = sorted({label for record in records for label in record.stages})
    means = {label: 1000 * sum(r.stages.get(label, 0.0) for r in records) / len(records) for label in labels}
    means["compress_image"] = 1000 * sum(r.compress_s for r in records) / len(records)
    total = 1000 * sum(r.service_s for r in records) / len(records)
    means["rest (untimed: waits between the stages)"] = total - sum(means.values())
    return means


def _round_breakdown(result: dict[str, Any], workers: int) -> dict[str, Any]:
    """Where one pipeline round's wall time and CPU went."""
    records: list[ImageRecord] = result["records"]
    seconds = result["seconds"]
    started, completed = result["started_wall"], result["completed_wall"]
    first_start = min((r.started for r in records), default=started)
    last_end = max((r.ended for r in records), default=completed)
    cpu = result["cpu_s"]
    compress_cpu = sum(r.compress_cpu_s for r in records)
    service_cpu = sum(r.service_cpu_s for r in records)
    capacity = os.cpu_count() or 1
    functions: dict[str, float] = {}
    for name, value in cpu.items():
        if name.startswith(FUNCTION_PID_PREFIX):
            function = name.removeprefix(FUNCTION_PID_PREFIX).split("#")[0]
            functions[function] = functions.get(function, 0.0) + value
    process_cpu = functions.pop("process", 0.0)
    share = {
        "engine (compress_image)": compress_cpu,
        "process fn besides the engine (in the image stages)": service_cpu - compress_cpu,
        "process fn environments besides the image stages (batches, prefetch)": process_cpu - service_cpu,
        **{f"{function} fn environments": value for function, value in functions.items()},
        "the cloud process (gateway, runners)": cpu["self"],
        **{name: value for name, value in cpu.items() if name != "self" and not name.startswith(FUNCTION_PID_PREFIX)},
    }
    share["idle"] = max(0.0, seconds * capacity - sum(share.values()))
    invocations: list[InvocationRecord] = result.get("invocations", [])
    invoked_images = sum(sum(call.images.values()) for call in invocations)
    compress_ms = 1000 * sum(r.compress_s for r in records) / max(1, len(records))
    invocation_ms = 1000 * sum(call.wall_s for call in invocations) / max(1, invoked_images)
    return {
        "accept_s": result["accept_s"],
        "invocations": len(invocations),
        "images_per_invocation": invoked_images / max(1, len(invocations)),
        # What Lambda bills, per image: the process function's invocation wall time (and its CPU) over its images.
        "process_wall_ms_per_image": invocation_ms,
        "process_cpu_ms_per_image": 1000 * sum(call.cpu_s for call in invocations) / max(1, invoked_images),
        "process_wall_vs_compress": invocation_ms / compress_ms if compress_ms and invocations else None,
        "prepare_ms_mean": 1000 * sum(r.prepare_s for r in records) / max(1, len(records)),
        "finish_ms_mean": 1000 * sum(r.finish_s for r in records) / max(1, len(records)),
        "to_first_image_s": first_start - started,
        "processing_window_s": last_end - first_start,
        "after_last_image_s": completed - last_end,
        "service_ms_mean": 1000 * sum(r.service_s for r in records) / max(1, len(records)),
        "compress_ms_mean": 1000 * sum(r.compress_s for r in records) / max(1, len(records)),
        "compress_cpu_ms_mean": 1000 * compress_cpu / max(1, len(records)),
        **{f"stage_ms_mean: {label}": value for label, value in _stage_means(records).items()},
        # The share of the processing window the environments spent in invocations that held this request.
        "environments_busy": sum(call.wall_s for call in invocations) / max(1e-9, (last_end - first_start) * workers),
        "cpu_share": {key: value / (seconds * capacity) for key, value in share.items()},
    }
