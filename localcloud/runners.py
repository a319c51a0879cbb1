"""Event-source runners: drive the functions the way Lambda's event source mappings do.

SqsRunner: long-polls a queue (the images queue, the chunks queue), hands batches to the function, deletes what
succeeded, leaves the reported failures to come back after the visibility timeout (the queue's redrive policy moves
them to the DLQ).
StreamRunner: reads the table's stream, keeps the records matching the mapping's filter pattern, and retries
a failed batch from the first failed record, as Lambda does with ReportBatchItemFailures.
TimerRunner: invokes a function on a fixed rate with a scheduled event, as an EventBridge rate rule does."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from infra.topology import Topology
from localcloud.lambda_host import Invocable
from localcloud.provision import Resources

logger = logging.getLogger("localcloud.runners")


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Lambda/EventBridge filter-pattern matching (the subset Lambda event filtering supports)."""
    for key, expected in pattern.items():
        present = isinstance(event, Mapping) and key in event
        actual = event.get(key) if isinstance(event, Mapping) else None
        if isinstance(expected, Mapping):
            if not present or not matches(expected, actual):
                return False
        elif not any(_matches_value(rule, actual, present) for rule in expected):
            return False
    return True


def _matches_value(rule: Any, actual: Any, present: bool) -> bool:
    values = actual if isinstance(actual, list) else [actual]
    if not isinstance(rule, Mapping):
        return present and rule in values
    if "exists" in rule:
        return present == bool(rule["exists"])
    if not present:
        return False
    if "prefix" in rule:
        return any(isinstance(value, str) and value.startswith(rule["prefix"]) for value in values)
    if "anything-but" in rule:
        excluded = rule["anything-but"]
        excluded = excluded if isinstance(excluded, list) else [excluded]
        return all(value not in excluded for value in values)
    if "numeric" in rule:
        return any(_numeric(rule["numeric"], value) for value in values)
    raise ValueError(f"unsupported filter rule {rule}")


def _numeric(conditions: list[Any], value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    checks = {"=": float.__eq__, "<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}
    return all(checks[op](number, float(bound)) for op, bound in zip(conditions[::2], conditions[1::2], strict=True))


class _Loop:
    idle_wait_s = 0.05  # after a poll that found nothing

    def __init__(self, name: str, workers: int) -> None:
        self.name, self.workers = name, workers
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = 0
        self._busy_lock = threading.Lock()

    def start(self) -> None:
        for number in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"{self.name}-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.poll_once():
                    self._stop.wait(self.idle_wait_s)
            except Exception:
                logger.exception("%s: poll failed", self.name)
                self._stop.wait(1)

    def poll_once(self) -> bool:
        raise NotImplementedError


class SqsRunner(_Loop):
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        function: Invocable,
        *,
        batch_size: int,
        workers: int,
        wait_seconds: int = 1,
    ) -> None:
        super().__init__(f"sqs-{function.spec.name}", workers)
        self.sqs, self.queue_url, self.queue_arn = sqs, queue_url, queue_arn
        self.function, self.batch_size, self.wait_seconds = function, batch_size, wait_seconds

    def poll_once(self) -> bool:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False
        self.deliver(messages)
        return True

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [self._record(message) for message in messages]}
        try:
            result = self.function.invoke(event) or {}
            failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
        except Exception:
            logger.exception("%s: invocation failed; the whole batch will be retried", self.name)
            return
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                    for number, message in enumerate(done[start : start + 10])
                ],
            )

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.queue_arn.split(":")[3],
        }


class S3NotificationRunner(_Loop):
    """Invokes a function with the S3 events that moto put on a queue, as S3 would invoke it directly."""

    def __init__(self, sqs: Any, queue_url: str, function: Invocable) -> None:
        super().__init__(f"s3-{function.spec.name}", 1)
        self.sqs, self.queue_url, self.function = sqs, queue_url, function

    def poll_once(self) -> bool:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            records = json.loads(message["Body"]).get("Records")  # absent in S3's s3:TestEvent
            if records:
                try:
                    self.function.invoke({"Records": records})
                except Exception:
                    logger.exception("%s: invocation failed; the event will be delivered again", self.name)
                    continue
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return bool(messages)


class StreamRunner(_Loop):
    # Lambda polls a stream's shards 4 times a second. Every poll is three DynamoDB Streams calls, served one at a
    # time with every DynamoDB call of the pipeline (localcloud.aws_emulator): with 0.05 s between idle polls
    # they were tens of calls a second, more than the images' own counts at a few images a second.
    idle_wait_s = 0.25

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        function: Invocable,
        *,
        filter_pattern: Mapping[str, Any],
        batch_size: int,
        retry_attempts: int,
        position_path: Path | None = None,
    ) -> None:
        super().__init__(f"stream-{function.spec.name}", 1)
        self.streams, self.stream_arn, self.function = streams, stream_arn, function
        self.filter_pattern, self.batch_size, self.retry_attempts = filter_pattern, batch_size, retry_attempts
        # Per shard: the last record handed on. Kept in a file when given, as Lambda keeps a mapping's position:
        # a restarted local cloud goes on from there instead of delivering the whole stream again.
        self._position_path = position_path
        self._last_sequence: dict[str, str] = {}
        if position_path is not None and position_path.exists():
            self._last_sequence = json.loads(position_path.read_text()).get(stream_arn, {})
        self.failed_batches: list[dict[str, Any]] = []  # the on-failure destination

    def _iterator(self, shard_id: str) -> str:
        # A fresh iterator after the last record seen, on every poll. Reusing NextShardIterator would be enough
        # on DynamoDB, but moto replaces a table's state (its stream shard included) whenever a transaction is
        # cancelled, and an old iterator keeps reading the replaced shard, never seeing a new record.
        after = self._last_sequence.get(shard_id)
        position = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        return self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard_id, **position)["ShardIterator"]

    def poll_once(self) -> bool:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        progressed = False
        for shard in shards:
            shard_id = shard["ShardId"]
            raw = self.streams.get_records(ShardIterator=self._iterator(shard_id), Limit=1000).get("Records", [])
            if not raw:
                continue
            self._last_sequence[shard_id] = raw[-1]["dynamodb"]["SequenceNumber"]
            records = [stream_event_record(record, self.stream_arn) for record in raw]
            selected = [record for record in records if matches(self.filter_pattern, record)]
            for start in range(0, len(selected), self.batch_size):
                self._deliver(selected[start : start + self.batch_size])
            self._save_position()
            progressed = True
        return progressed

    def _save_position(self) -> None:
        if self._position_path is None:
            return
        partial = self._position_path.with_suffix(".partial")
        partial.write_text(json.dumps({self.stream_arn: self._last_sequence}))
        partial.replace(self._position_path)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        for _attempt in range(self.retry_attempts + 1):
            try:
                result = self.function.invoke({"Records": batch}) or {}
            except Exception:
                logger.exception("%s: invocation failed; retrying the batch", self.name)
                time.sleep(0.2)
                continue
            failures = [item["itemIdentifier"] for item in result.get("batchItemFailures", [])]
            if not failures:
                return
            first = next(i for i, record in enumerate(batch) if record["dynamodb"]["SequenceNumber"] in failures)
            batch = batch[first:]
            time.sleep(0.2)
        logger.error("%s: batch failed after %d retries; sent to on-failure", self.name, self.retry_attempts)
        self.failed_batches.append({"records": batch})


class TimerRunner(_Loop):
    def __init__(self, function: Invocable, *, interval_s: float) -> None:
        super().__init__(f"timer-{function.spec.name}", 1)
        self.function, self.interval_s = function, interval_s
        self._next = time.monotonic() + interval_s

    def poll_once(self) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.interval_s
        self.fire()
        return True

    def fire(self) -> Any:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": [],
            "detail": {},
        }
        try:
            return self.function.invoke(event)
        except Exception:
            logger.exception("%s: invocation failed; the next tick runs it again", self.name)
            return None


def stream_event_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda's DynamoDB stream event carries it."""
    data = dict(record["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, dt.datetime):
        data["ApproximateCreationDateTime"] = int(created.timestamp())
    return _plain({**record, "dynamodb": data, "eventSourceARN": stream_arn})


def _plain(value: Any) -> Any:
    """boto3 hands back Decimals and bytes; Lambda events are plain JSON."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def event_runners(
    topology: Topology,
    resources: Resources,
    functions: Mapping[str, Invocable],
    *,
    workers: int,
    wait_seconds: int = 1,
    state_dir: Path | None = None,
    reconcile_interval_s: float | None = None,
) -> tuple[SqsRunner, StreamRunner, S3NotificationRunner, TimerRunner, SqsRunner]:
    """The topology's event sources: the images queue, the requests table's stream, the uploads bucket, the
    reconciler's schedule (its rate, unless `reconcile_interval_s` says otherwise), the chunks queue. With
    `state_dir`, the stream's position is kept there across restarts."""
    schedule = topology.reconcile_schedule
    queue_source, stream_source, chunk_source = topology.queue_source, topology.stream_source, topology.chunk_source
    expand = topology.function(chunk_source.function)
    return (
        SqsRunner(
            boto3.client("sqs"),
            resources.queue_url,
            resources.queue_arn,
            functions[queue_source.function],
            batch_size=queue_source.batch_size,
            workers=workers,
            wait_seconds=wait_seconds,
        ),
        StreamRunner(
            boto3.client("dynamodbstreams"),
            resources.stream_arn,
            functions[stream_source.function],
            filter_pattern=stream_source.filter_pattern,
            batch_size=stream_source.batch_size,
            retry_attempts=stream_source.retry_attempts,
            position_path=state_dir / "stream-position.json" if state_dir is not None else None,
        ),
        S3NotificationRunner(
            boto3.client("sqs"), resources.upload_events_url, functions[topology.upload_notification.function]
        ),
        TimerRunner(
            functions[schedule.function],
            interval_s=reconcile_interval_s if reconcile_interval_s is not None else schedule.rate_minutes * 60,
        ),
        SqsRunner(
            boto3.client("sqs"),
            resources.chunks_queue_url,
            resources.chunks_queue_arn,
            functions[chunk_source.function],
            batch_size=chunk_source.batch_size,
            # Lambda polls with no more concurrency than the mapping's cap (the function's reserved concurrency).
            workers=min(workers, expand.reserved_concurrency or workers),
            wait_seconds=wait_seconds,
        ),
    )
