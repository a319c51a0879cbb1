"""Count the calls a process makes to each service: AWS (botocore's `before-parameter-build` event, once per API
call, whatever its retries) and MongoDB (pymongo's command listener, once per command sent: a bulk write of ten
updates is one `update`).

Installed by the bench in every execution environment of the local cloud (`bench.pipeline.install_probe`, before
any client is built: both hooks only reach clients made after them) and in the bench's own process, where the
event-source runners poll SQS as Lambda's pollers do. Each environment writes its running totals to a file after
every invocation; the bench reads them before and after the work it measures."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from pymongo import monitoring

CALLS_SUFFIX = ".calls.json"


class ServiceCalls(monitoring.CommandListener):
    """Totals by `service.Operation` (`s3.PutObject`, `mongodb.update`); an SQS call also names its queue
    (`sqs.ReceiveMessage@ips-images`), since which queue it polls decides whether AWS bills it. A DynamoDB
    transaction's or batch's items are kept beside it (`dynamodb.TransactWriteItems#items`): DynamoDB bills by
    item."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def install(self, *, mongodb: bool = True) -> ServiceCalls:
        import boto3

        session = boto3.DEFAULT_SESSION
        if session is None:
            boto3.setup_default_session()
            session = boto3.DEFAULT_SESSION
        assert session is not None
        # Once per API call, before its retries, with the call's own parameters (before-call has the HTTP request).
        session.events.register("before-parameter-build", self._aws_call)
        if mongodb:
            monitoring.register(self)
        return self

    def _aws_call(self, event_name: str, params: dict[str, Any] | None = None, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        key = f"{service}.{operation}"
        params = params or {}
        queue = params.get("QueueUrl")
        if isinstance(queue, str):
            key += "@" + queue.rstrip("/").rsplit("/", 1)[-1]
        self._add(key)
        # What DynamoDB bills by: a transaction's items (one call, many write units).
        if operation == "TransactWriteItems":
            self._add(f"{key}#items", len(params.get("TransactItems", ())))
        elif operation == "BatchWriteItem":
            self._add(f"{key}#items", sum(len(requests) for requests in params.get("RequestItems", {}).values()))

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._add(f"mongodb.{event.command_name}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def _add(self, key: str, count: int = 1) -> None:
        with self._lock:
            self._counts[key] += count

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def save(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self.totals()))
        partial.replace(path)


def read_totals(folder: Path) -> dict[int, dict[str, int]]:
    """Every environment's running totals, by pid."""
    totals = {}
    for path in folder.glob(f"*{CALLS_SUFFIX}"):
        try:
            totals[int(path.name.removesuffix(CALLS_SUFFIX))] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue  # being replaced: the next reading has it
    return totals


def between(before: dict[str, int], after: dict[str, int]) -> Counter[str]:
    """The calls made between two readings of running totals."""
    return Counter({key: after[key] - before.get(key, 0) for key in after if after[key] > before.get(key, 0)})


def by_service(calls: Counter[str]) -> Counter[str]:
    """`s3.PutObject` -> `s3`; SQS calls stay apart by queue (`sqs@ips-images`)."""
    services: Counter[str] = Counter()
    for key, count in calls.items():
        if "#" in key:
            continue  # a call's units, not a call
        service, _, rest = key.partition(".")
        queue = rest.partition("@")[2]
        services[f"{service}@{queue}" if queue else service] += count
    return services
