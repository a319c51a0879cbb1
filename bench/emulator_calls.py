"""`python -m bench.emulator_calls`: what one per-image AWS call costs the local cloud's emulators.

For each DynamoDB server (the moto-based AWS emulator, `localcloud.aws_emulator`, and DynamoDB Local, persisting
to disk as the local cloud runs it) it starts the server on a free port, provisions the topology's table, opens
one request and counts `--calls` images with `DynamoLedger.count` (the process function's conditional
TransactWriteItems), from 1 thread and then from `--threads` threads (the batch pipeline's finishing pool). It
prints, per call, the server's CPU (from /proc) and the client's wall time. Against the moto emulator it also
times the other per-image calls: an S3 put of a 20 KB output, an SQS send, and a receive + delete.

Only the ratios mean much on a shared machine; the absolute figures move with the load."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.cpu import process_cpu_seconds
from infra.topology import TOPOLOGY
from ips.adapters.dynamodb import DynamoLedger
from ips.model import ImageTask
from localcloud.cloud import FAKE_CREDENTIALS
from localcloud.dynamodb_local import dynamodb_local
from localcloud.provision import provision
from localcloud.servers import ChildServer, aws_emulator, free_port


def _client(service: str, url: str, pool: int) -> Any:
    return boto3.client(service, endpoint_url=url, config=Config(max_pool_connections=pool))


def _task(request_id: str, row: int) -> ImageTask:
    return ImageTask(request_id=request_id, row=row, index=0, url=f"http://127.0.0.1:9/{row}.jpg", salt="bench")


def timed_calls(server_pid: int, calls: int, threads: int, call: Callable[[int], None]) -> dict[str, float]:
    """Run call(0..calls-1) on `threads` threads: the server's CPU ms and the wall ms per call."""
    numbers = iter(range(calls))
    lock = threading.Lock()
    latencies: list[float] = []

    def work() -> None:
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            started = time.perf_counter()
            call(number)
            with lock:
                latencies.append(time.perf_counter() - started)

    cpu_before, wall_before = process_cpu_seconds(server_pid), time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - wall_before
    cpu = process_cpu_seconds(server_pid) - cpu_before
    latencies.sort()
    return {
        "server_cpu_ms": 1000 * cpu / calls,
        "latency_ms_median": 1000 * latencies[len(latencies) // 2],
        "throughput_per_s": calls / wall,
    }


def count_costs(server: ChildServer, url: str, calls: int, threads: int, warmup: int) -> dict[str, Any]:
    dynamodb = _client("dynamodb", url, threads)
    table = provision_table(url)
    ledger = DynamoLedger(dynamodb, table)
    results: dict[str, Any] = {}
    assert server.process is not None
    for label, width in (("1 thread", 1), (f"{threads} threads", threads)):
        request_id = str(uuid.uuid4())
        ledger.open(request_id, calls + 1)  # never the last image: every call is the plain count
        warm = str(uuid.uuid4())
        ledger.open(warm, warmup + 1)
        for row in range(warmup):  # the JVM's JIT, caches
            ledger.count(_task(warm, row), succeeded=True)
        results[label] = timed_calls(
            server.process.pid, calls, width, lambda row, rid=request_id: ledger.count(_task(rid, row), succeeded=True)
        )
    results["get_item"] = timed_calls(server.process.pid, calls, 1, lambda _: ledger.counts(request_id))
    return results


def provision_table(url: str) -> str:
    from localcloud.provision import requests_table

    requests_table(TOPOLOGY.requests_table, _client("dynamodb", url, 1))
    return TOPOLOGY.requests_table


def other_costs(server: ChildServer, url: str, calls: int) -> dict[str, Any]:
    assert server.process is not None
    s3, sqs = _client("s3", url, 4), _client("sqs", url, 4)
    resources = provision(TOPOLOGY, s3, sqs, _client("dynamodb", url, 1))
    body = os.urandom(20_000)
    pid = server.process.pid
    put = timed_calls(
        pid, calls, 1, lambda n: s3.put_object(Bucket=resources.processed_bucket, Key=f"bench/{n}.jpg", Body=body)
    )
    send = timed_calls(pid, calls, 1, lambda n: sqs.send_message(QueueUrl=resources.queue_url, MessageBody="x" * 300))

    def receive_delete(_: int) -> None:
        for message in sqs.receive_message(QueueUrl=resources.queue_url, MaxNumberOfMessages=1).get("Messages", []):
            sqs.delete_message(QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"])

    return {"s3 put 20 KB": put, "sqs send": send, "sqs receive + delete": timed_calls(pid, calls, 1, receive_delete)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_calls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200, help="counts before the timed ones (the JVM's JIT)")
    parser.add_argument("--servers", default="moto,dynamodb-local", help="moto, dynamodb-local, dynamodb-local-memory")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    os.environ.update({key: value for key, value in FAKE_CREDENTIALS.items() if key not in os.environ})
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="emulator-calls-") as scratch:
        root = Path(scratch)
        for name in args.servers.split(","):
            port = free_port()
            if name == "moto":
                server = aws_emulator(port, root / "logs")
            elif name == "dynamodb-local-memory":
                server = dynamodb_local(port, None, root / "logs")
            else:
                server = dynamodb_local(port, root / "dynamodb", root / "logs")
            server.start()
            url = f"http://127.0.0.1:{port}"
            try:
                figures[name] = {"count": count_costs(server, url, args.calls, args.threads, args.warmup)}
                if name == "moto":
                    figures[name].update(other_costs(server, url, args.calls))
            finally:
                server.stop()
    for name, calls in figures.items():
        for call, by_width in calls.items():
            rows = by_width.items() if call == "count" else [("1 thread", by_width)]
            for width, cost in rows:
                print(
                    f"{name:15} {call:22} {width:10} server CPU {cost['server_cpu_ms']:6.2f} ms/call  "
                    f"latency {cost['latency_ms_median']:6.2f} ms  {cost['throughput_per_s']:7.1f} calls/s"
                )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
