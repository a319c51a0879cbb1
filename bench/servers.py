"""`python -m bench.servers`: the CPU per operation of each server that could serve the local cloud's S3, SQS,
DynamoDB and MongoDB, for the table in docs/local-cloud.md (issue 17).

Each candidate is started on a free port of 127.0.0.1, warmed up, then sent the calls one image makes of that
service, `--calls` times, from one thread; the figure is the server's CPU per call (its process and every
descendant, from /proc), beside the client's wall time. Candidates:

- S3: the local cloud's moto emulator (`localcloud.aws_emulator`), LocalStack's S3 (host mode, `.venv-localstack`,
  `make test-localstack` installs it), s3rver (npm; `--node-modules` names a folder where it is installed);
- SQS: the moto emulator (with `localcloud.emulator_sqs`), LocalStack's SQS, sqslite (npm);
- DynamoDB: the moto emulator, DynamoDB Local (in memory and on disk);
- MongoDB: SecantusDB as a replica set (its default) and standalone (what the local cloud runs), on disk;
  nx-27017 (PyPI, `--nx` names its executable).

A candidate that is not installed, or that refuses one of the calls (an operation it does not implement), is
reported so. Only ratios mean much on a shared machine."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.cpu import process_cpu_seconds
from bench.reuse import _descendants
from infra.topology import TOPOLOGY
from localcloud.cloud import FAKE_CREDENTIALS
from localcloud.servers import LOOPBACK, aws_emulator, free_port, wait_for_port

Server = tuple[str, Callable[[], float]]  # (endpoint, CPU seconds of the server so far)
BODY = os.urandom(20_000)  # a small image's output


def _tree_cpu(pid: int) -> Callable[[], float]:
    return lambda: process_cpu_seconds(pid) + sum(process_cpu_seconds(child) for child in _descendants(pid))


@contextmanager
def _process(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # noqa: S603
    try:
        wait_for_port(port, process, 120)
        yield f"http://{LOOPBACK}:{port}", _tree_cpu(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _started(server: Any, port: int) -> Iterator[Server]:
    """One of the local cloud's own servers (localcloud.servers), started on `port` for the measurement."""
    server.start()
    try:
        assert server.process is not None
        yield f"http://{LOOPBACK}:{port}", _tree_cpu(server.process.pid)
    finally:
        server.stop()


@contextmanager
def moto(root: Path, _: argparse.Namespace) -> Iterator[Server]:
    port = free_port()
    with _started(aws_emulator(port, root), port) as served:
        yield served


@contextmanager
def localstack(root: Path, _: argparse.Namespace) -> Iterator[Server]:
    from tests.localstack.servers import LocalStack

    server = LocalStack(root / "localstack")
    (root / "localstack").mkdir(exist_ok=True)
    server.spawn()
    try:
        server.wait(180)
        assert server.child.process is not None
        yield server.url, _tree_cpu(server.child.process.pid)
    finally:
        server.stop()


def _node(args: argparse.Namespace, script: str) -> list[str]:
    path = Path(args.node_modules) / script
    if not path.exists():
        raise FileNotFoundError(f"{path} is not installed (npm install it in {args.node_modules})")
    return ["node", str(path)]


@contextmanager
def s3rver(root: Path, args: argparse.Namespace) -> Iterator[Server]:
    port = free_port()
    command = [*_node(args, "s3rver/bin/s3rver.js"), "-d", str(root / "s3rver"), "-a", LOOPBACK, "-p", str(port), "-s"]
    saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER")  # noqa: S106 - its fixed test keys
    try:
        with _process(command, port, root / "s3rver.log") as server:
            yield server
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


@contextmanager
def sqslite(root: Path, args: argparse.Namespace) -> Iterator[Server]:
    port = free_port()
    with _process(
        [*_node(args, "sqslite/bin/cli.js"), "--host", LOOPBACK, "--port", str(port)], port, root / "sqslite.log"
    ) as server:
        yield server


@contextmanager
def dynamodb_local_server(root: Path, _: argparse.Namespace, *, on_disk: bool) -> Iterator[Server]:
    from localcloud.dynamodb_local import dynamodb_local

    port = free_port()
    with _started(dynamodb_local(port, root / "dynamodb" if on_disk else None, root), port) as served:
        yield served


@contextmanager
def secantus(root: Path, _: argparse.Namespace, *, standalone: bool) -> Iterator[Server]:
    from localcloud.servers import _executable

    port = free_port()
    folder = root / f"secantus-{uuid.uuid4().hex[:6]}"
    command = [_executable("secantusd-py"), "--host", LOOPBACK, "--port", str(port), "--storage-path", str(folder)]
    command += ["--log-level", "WARNING", *(["--standalone"] if standalone else [])]
    with _process(command, port, root / "secantus.log") as (_, cpu):
        yield f"mongodb://{LOOPBACK}:{port}/?directConnection=true", cpu


@contextmanager
def nx27017(root: Path, args: argparse.Namespace) -> Iterator[Server]:
    if not args.nx or not Path(args.nx).exists():
        raise FileNotFoundError("nx-27017 is not installed (--nx names its executable)")
    port = free_port()
    command = [args.nx, "--host", LOOPBACK, "-p", str(port), "--db", str(root / "nx.db")]
    command += ["--log-file", str(root / "nx.log"), "--pid-file", str(root / "nx.pid")]
    with _process(command, port, root / "nx-out.log") as (_, cpu):
        yield f"mongodb://{LOOPBACK}:{port}/?directConnection=true", cpu


def _client(service: str, url: str) -> Any:
    # A session of its own: a session keeps the credentials it first read (s3rver takes only its own keys).
    return boto3.session.Session().client(service, endpoint_url=url, config=Config(retries={"max_attempts": 1}))


def s3_calls(url: str) -> dict[str, Callable[[int], Any]]:
    s3 = _client("s3", url)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="source", Body=BODY)
    return {
        "put 20 KB": lambda n: s3.put_object(Bucket=bucket, Key=f"out/{n}.jpg", Body=BODY, ContentType="image/jpeg"),
        "get 20 KB": lambda n: s3.get_object(Bucket=bucket, Key="source")["Body"].read(),
        "copy": lambda n: s3.copy_object(
            Bucket=bucket, Key=f"copy/{n}", CopySource={"Bucket": bucket, "Key": "source"}
        ),
    }


def sqs_calls(url: str) -> dict[str, Callable[[int], Any]]:
    sqs = _client("sqs", url)
    queue = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    body = json.dumps({"requestId": str(uuid.uuid4()), "row": 1, "index": 0, "url": "http://127.0.0.1:9/" + "x" * 200})

    def send_10(n: int) -> None:
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(k), "MessageBody": body} for k in range(10)])

    def receive_delete_10(n: int) -> None:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
        entries = [{"Id": str(k), "ReceiptHandle": message["ReceiptHandle"]} for k, message in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=queue, Entries=entries)

    return {"send batch of 10": send_10, "receive 10 + delete batch": receive_delete_10}


def dynamodb_calls(url: str) -> dict[str, Callable[[int], Any]]:
    from ips.shared.model import ImageTask
    from ips.shared.ports import ImageCount, utc_now
    from ips_adapters.dynamodb import DynamoLedger
    from localcloud.provision import requests_table

    def task(request_id: str, row: int) -> ImageTask:
        return ImageTask(request_id=request_id, row=row, index=0, url=f"http://127.0.0.1:9/{row}.jpg", salt="bench")

    requests_table(TOPOLOGY.requests_table, _client("dynamodb", url))
    ledger = DynamoLedger(_client("dynamodb", url), TOPOLOGY.requests_table)
    request_id = str(uuid.uuid4())
    ledger.open(request_id, 1_000_000, utc_now())
    return {
        # What the process function does per batch of 10: one TransactWriteItems (a marker per image and the
        # shard's counter update), then the consistent read of the shards that tells whether the request is done.
        "count_many of 10 (TransactWriteItems + Query)": lambda n: ledger.count_many(
            [ImageCount(task(request_id, 10 * n + i), succeeded=True) for i in range(10)], utc_now()
        ),
        "counts (GetItem)": lambda n: ledger.counts(request_id),
    }


def mongodb_calls(uri: str) -> dict[str, Callable[[int], Any]]:
    from pymongo import MongoClient, UpdateOne

    from ips_adapters.mongo import MongoCatalog
    from ips_adapters.mongo_reuse import MongoReuseIndex

    database = MongoClient(uri, tz_aware=True)[f"bench_{uuid.uuid4().hex[:6]}"]
    MongoCatalog(database).ensure_indexes()
    MongoReuseIndex(database).ensure_indexes()
    outcome = {"status": "SUCCEEDED", "outputUrl": "http://x/y.jpg", "inputBytes": 2000, "outputBytes": 900}
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    products, reuse = database["products"], database["reuse"]
    products.insert_many(
        [
            {"_id": f"r:{n:09d}", "requestId": "r", "row": n, "images": [{"status": "PENDING"}] * 2}
            for n in range(20_000)
        ]
    )
    reuse.insert_many(
        [
            {
                "_id": f"h{n}",
                "tenant": "t",
                "optionsKey": "o",
                "url": f"u{n}",
                "contentSha256": f"c{n}",
                "expiresAt": expires,
            }
            for n in range(2_000)
        ]
    )

    def record(n: int) -> None:
        products.update_one({"_id": f"r:{n:09d}", "images.0.status": "PENDING"}, {"$set": {"images.0": outcome}})

    def record_10(n: int) -> None:
        updates = [
            UpdateOne(
                {"_id": f"r:{10_000 + n * 5 + k // 2:09d}", f"images.{k % 2}.status": "PENDING"},
                {"$set": {f"images.{k % 2}": outcome}},
            )
            for k in range(10)
        ]
        products.bulk_write(updates, ordered=False)

    now = dt.datetime.now(dt.UTC)
    return {
        "record an image (update_one)": record,
        "record 10 images (bulk_write)": record_10,
        "reuse lookup of 10 URLs (find $in)": lambda n: list(
            reuse.find(
                {"_id": {"$in": [f"h{n * 10 + k}" for k in range(10)]}, "tenant": "t", "expiresAt": {"$gt": now}}
            )
        ),
        "reuse lookup by content (find_one)": lambda n: reuse.find_one(
            {"tenant": "t", "optionsKey": "o", "contentSha256": f"c{n}", "expiresAt": {"$gt": now}}
        ),
        "remember (replace_one upsert)": lambda n: reuse.replace_one(
            {"_id": f"new{n}"},
            {"tenant": "t", "optionsKey": "o", "contentSha256": f"n{n}", "expiresAt": expires},
            upsert=True,
        ),
    }


CANDIDATES: dict[str, list[tuple[str, Callable[..., Any], Callable[[str], dict[str, Callable[[int], Any]]]]]] = {
    "s3": [("moto emulator", moto, s3_calls), ("LocalStack", localstack, s3_calls), ("s3rver", s3rver, s3_calls)],
    "sqs": [("moto emulator", moto, sqs_calls), ("LocalStack", localstack, sqs_calls), ("sqslite", sqslite, sqs_calls)],
    "dynamodb": [
        ("moto emulator", moto, dynamodb_calls),
        (
            "DynamoDB Local, in memory",
            lambda root, args: dynamodb_local_server(root, args, on_disk=False),
            dynamodb_calls,
        ),
        ("DynamoDB Local, on disk", lambda root, args: dynamodb_local_server(root, args, on_disk=True), dynamodb_calls),
    ],
    "mongodb": [
        (
            "SecantusDB, replica set (its default)",
            lambda root, args: secantus(root, args, standalone=False),
            mongodb_calls,
        ),
        ("SecantusDB, standalone", lambda root, args: secantus(root, args, standalone=True), mongodb_calls),
        ("nx-27017", nx27017, mongodb_calls),
    ],
}


def measure(calls: dict[str, Callable[[int], Any]], cpu: Callable[[], float], n: int, warmup: int) -> dict[str, Any]:
    figures = {}
    for name, call in calls.items():
        for number in range(warmup):
            call(1_000_000 + number)
        before, started = cpu(), time.perf_counter()
        for number in range(n):
            call(number)
        figures[name] = {
            "server_cpu_ms": 1000 * (cpu() - before) / n,
            "wall_ms": 1000 * (time.perf_counter() - started) / n,
        }
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default="s3,sqs,dynamodb,mongodb")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=100, help="calls before the timed ones (JITs, caches)")
    parser.add_argument("--node-modules", default="node_modules", help="where s3rver and sqslite are installed")
    parser.add_argument("--nx", help="the nx-27017 executable (pip install nx-27017 in a venv of its own)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ.update({key: value for key, value in FAKE_CREDENTIALS.items() if key not in os.environ})
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as scratch:
        for service in args.services.split(","):
            for name, start, calls in CANDIDATES[service]:
                root = Path(scratch) / f"{service}-{len(results.get(service, {}))}"
                root.mkdir()
                try:
                    with start(root, args) as (url, cpu):
                        figures: dict[str, Any] = measure(calls(url), cpu, args.calls, args.warmup)
                except Exception as exc:  # not installed, or an operation it does not implement
                    figures = {"unavailable": f"{type(exc).__name__}: {str(exc)[:300]}"}
                results.setdefault(service, {})[name] = figures
                for call, cost in figures.items():
                    text = (
                        cost
                        if isinstance(cost, str)
                        else f"server CPU {cost['server_cpu_ms']:7.2f} ms/call, wall {cost['wall_ms']:7.2f} ms"
                    )
                    print(f"{service:9} {name:38} {call:38} {text}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
