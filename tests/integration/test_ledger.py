"""The DynamoDB ledger against moto, and against DynamoDB Local (what serves the local cloud's DynamoDB): each
image counted once, a batch's images in one transaction, the counts summed over the request's shards, the last
count flips the request complete exactly once, and a cancelled count leaves no trace."""

from __future__ import annotations

import json
import queue
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from ips.shared.model import NO_SAVINGS, Counts, ImageTask, Savings
from ips.shared.ports import ImageCount
from ips_adapters.dynamodb import COMPLETION_FILTER, MAX_SHARDS, DynamoLedger, shard_count
from localcloud.provision import Resources, requests_table
from localcloud.runners import matches, stream_event_record

NOW = datetime.now(UTC).replace(microsecond=0)  # when the calls happen (the stores keep whole seconds)


@pytest.fixture
def ledger(aws: Resources) -> DynamoLedger:
    return DynamoLedger(boto3.client("dynamodb"), aws.table)


def task(index: int, request_id: str = "req-1") -> ImageTask:
    return ImageTask(request_id, 2 + index // 10, index % 10, f"https://a.example/{index}.jpg", "salt")


def count(index: int, succeeded: bool = True, request_id: str = "req-1", savings: Savings = NO_SAVINGS) -> ImageCount:
    return ImageCount(task(index, request_id), succeeded, savings)


def own_table(endpoint: str, name: str) -> tuple[Any, Any, str]:
    """A fresh table on a local server: (its client, its streams client, the stream's ARN)."""
    client = boto3.client("dynamodb", endpoint_url=endpoint, config=Config(max_pool_connections=50))
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint)
    return client, streams, requests_table(name, client)


def stream_records(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record of the table's stream so far, as Lambda hands them to a function."""
    records = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records += [stream_event_record(record, stream_arn) for record in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


def completions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if matches(COMPLETION_FILTER, record)]


def test_each_image_counts_once_and_the_last_one_completes(ledger: DynamoLedger) -> None:
    assert ledger.open("req-1", 3, NOW)
    assert not ledger.open("req-1", 3, NOW)  # a repeated fan-out keeps the counter
    first, again, second = ledger.count_many([count(0), count(0, succeeded=False), count(1, succeeded=False)], NOW)
    assert (first.counted, again.counted, second.counted) == (True, False, True)  # the same image twice: once
    assert not any(result.completed for result in (first, again, second))
    [redelivered, last] = ledger.count_many([count(1), count(2)], NOW)
    assert (redelivered.counted, last.counted, last.completed) == (False, True, True)
    assert ledger.counts("req-1") == Counts(total=3, succeeded=2, failed=1)
    assert ledger.count_many([count(2)], NOW) == [type(last)(counted=False, completed=False)]


def test_a_batch_sums_its_savings_and_moves_the_request_to_when_it_was_counted(ledger: DynamoLedger) -> None:
    ledger.open("req-1", 10, NOW)
    opened = ledger.counts("req-1")
    ledger.count_many([count(n, savings=Savings(100, 40, n % 2)) for n in range(4)], NOW + timedelta(minutes=1))
    counts = ledger.counts("req-1")
    ledger.touch("req-1", NOW + timedelta(minutes=2))
    touched = ledger.counts("req-1")
    assert counts is not None and counts.savings == Savings(400, 160, 2)
    assert opened is not None and opened.progress_at == NOW.timestamp()
    assert counts.progress_at == (NOW + timedelta(minutes=1)).timestamp()
    assert touched is not None and touched.progress_at == (NOW + timedelta(minutes=2)).timestamp()


def test_a_request_gets_shards_by_its_size_and_counts_are_summed_over_them(aws: Resources) -> None:
    """GIVEN a request big enough for MAX_SHARDS shards WHEN batches are counted from many writers THEN the counts
    land on several shards and are summed exactly; a small request has one."""
    assert (shard_count(10), shard_count(100), shard_count(101), shard_count(10**6)) == (1, 1, 2, MAX_SHARDS)
    client = boto3.client("dynamodb")
    ledger = DynamoLedger(client, aws.table, rng=random.Random(7))
    total = 100 * MAX_SHARDS
    ledger.open("big", total, NOW)
    for start in range(0, 200, 10):  # each batch from a new writer (thread): each picks its own shard
        writer = threading.Thread(
            target=ledger.count_many, args=([count(n, request_id="big") for n in range(start, start + 10)], NOW)
        )
        writer.start()
        writer.join()
    items = client.query(
        TableName=aws.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :c)",
        ExpressionAttributeValues={":pk": {"S": "big"}, ":c": {"S": "COUNTER#"}},
    )["Items"]
    assert len(items) > 5
    assert ledger.counts("big") == Counts(total, 200, 0)
    ledger.open("small", 7, NOW)
    ledger.count_many([count(n, request_id="small") for n in range(7)], NOW)
    assert (
        int(
            client.get_item(TableName=aws.table, Key={"pk": {"S": "small"}, "sk": {"S": "COUNTER"}})["Item"]["shards"][
                "N"
            ]
        )
        == 1
    )


def test_only_the_completing_update_passes_the_stream_filter(aws: Resources, ledger: DynamoLedger) -> None:
    ledger.open("req-1", 3, NOW)
    ledger.count_many([count(0), count(1)], NOW)
    ledger.count_many([count(2)], NOW)
    streams = boto3.client("dynamodbstreams")
    records = stream_records(streams, aws.stream_arn)
    keys = [(record["eventName"], record["dynamodb"]["Keys"]["sk"]["S"]) for record in records]
    # open; the markers and the shard of each batch (moto may report a new item's update twice); the flip
    assert [key for key in keys if key[1] != "COUNTER#0"] == [
        ("INSERT", "COUNTER"),
        ("INSERT", "IMAGE#2#0"),
        ("INSERT", "IMAGE#2#1"),
        ("INSERT", "IMAGE#2#2"),
        ("MODIFY", "COUNTER"),
    ]
    [selected] = completions(records)
    assert selected["dynamodb"]["NewImage"]["status"] == {"S": "COMPLETE"}


def test_the_stream_runner_sees_the_completion_after_a_cancelled_transaction(
    aws: Resources, ledger: DynamoLedger
) -> None:
    """moto swaps a table's state (its stream shard included) when a transaction is cancelled; a runner that kept
    its old shard iterator would never see the completing update (found by the demo under load)."""
    from localcloud.lambda_host import LocalFunction
    from localcloud.runners import StreamRunner

    seen: list[dict] = []

    class Recorder(LocalFunction):
        def __init__(self) -> None:
            self.spec = type("Spec", (), {"name": "recorder"})()

        def invoke(self, event: dict) -> dict:
            seen.extend(event["Records"])
            return {"batchItemFailures": []}

    runner = StreamRunner(
        boto3.client("dynamodbstreams"),
        aws.stream_arn,
        Recorder(),
        filter_pattern=COMPLETION_FILTER,
        batch_size=10,
        retry_attempts=0,
    )
    ledger.open("req-1", 3, NOW)
    ledger.count_many([count(0)], NOW)
    assert runner.poll_once() and seen == []
    [duplicate] = ledger.count_many([count(0)], NOW)  # its transaction is cancelled
    assert not duplicate.counted
    ledger.count_many([count(1)], NOW)
    assert ledger.count_many([count(2)], NOW)[0].completed
    runner.poll_once()
    assert [record["dynamodb"]["Keys"]["pk"]["S"] for record in seen] == ["req-1"]


def test_a_cancelled_transaction_leaves_no_trace(dynamodb_local_endpoint: str) -> None:
    """A batch holding an image counted before is cancelled, then goes again without it: the
    counts, the items and the stream must look as if the duplicate never came."""
    name = f"rollback-{threading.get_ident()}"
    client, streams, stream_arn = own_table(dynamodb_local_endpoint, name)
    ledger = DynamoLedger(client, name)
    ledger.open("req-1", 3, NOW)
    assert ledger.count_many([count(0)], NOW)[0].counted
    again, new = ledger.count_many([count(0, succeeded=False), count(1)], NOW)
    assert (again.counted, new.counted) == (False, True)
    assert ledger.counts("req-1") == Counts(total=3, succeeded=2, failed=0)
    items = client.query(
        TableName=ledger.table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "req-1"}}
    )["Items"]
    assert sorted(item["sk"]["S"] for item in items) == ["COUNTER", "COUNTER#0", "IMAGE#2#0", "IMAGE#2#1"]
    assert ledger.count_many([count(2)], NOW)[0].completed
    events = Counter(
        (record["eventName"], record["dynamodb"]["Keys"]["sk"]["S"]) for record in stream_records(streams, stream_arn)
    )
    # The duplicate's marker was written once, nothing was taken back (a rollback would show as a REMOVE), and
    # the counter moved once: its flip.
    assert {key: n for key, n in events.items() if key[1].startswith("IMAGE#")} == {
        ("INSERT", "IMAGE#2#0"): 1,
        ("INSERT", "IMAGE#2#1"): 1,
        ("INSERT", "IMAGE#2#2"): 1,
    }
    assert not any(name == "REMOVE" for name, _ in events)
    assert (events[("INSERT", "COUNTER")], events[("MODIFY", "COUNTER")]) == (1, 1)


class FailingOnce:
    """A botocore hook that fails the first call of one DynamoDB operation (a worker dying at that step)."""

    def __init__(self, client: Any, operation: str) -> None:
        self.failed = False
        client.meta.events.register(f"before-call.dynamodb.{operation}", self._fail)

    def _fail(self, **_: Any) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the worker died here")


@pytest.mark.parametrize("operation", ["Query", "UpdateItem"], ids=["before-the-read-back", "before-the-flip"])
def test_a_crash_between_the_last_count_and_the_flip_is_mended_by_the_redelivery(
    aws: Resources, operation: str
) -> None:
    """GIVEN the batch holding a request's last images, whose transaction commits and whose worker dies before the
    completion flip WHEN the batch is delivered again THEN nothing is counted again, the request is flipped, and
    exactly one stream record matches the completion filter."""
    client = boto3.client("dynamodb")
    ledger = DynamoLedger(client, aws.table)
    ledger.open("req-1", 4, NOW)
    ledger.count_many([count(0), count(1)], NOW)
    crash = FailingOnce(client, operation)
    with pytest.raises(ConnectionError):
        ledger.count_many([count(2), count(3)], NOW)
    assert crash.failed and ledger.counts("req-1") == Counts(4, 4, 0)
    assert completions(stream_records(boto3.client("dynamodbstreams"), aws.stream_arn)) == []
    results = ledger.count_many([count(2), count(3)], NOW)  # the redelivery
    assert [result.counted for result in results] == [False, False] and results[-1].completed
    assert len(completions(stream_records(boto3.client("dynamodbstreams"), aws.stream_arn))) == 1


class TransactionConflicts:
    """DynamoDB's rule for concurrent transactions, which no local server applies (DynamoDB Local runs one
    transaction at a time): a transaction that touches an item another transaction
    in flight touches is cancelled with TransactionConflict. Applied at the client (botocore's before-call and
    after-call events), between the writers of this test: what DynamoDB would see as concurrent."""

    def __init__(self, client: Any) -> None:
        self.transactions = 0
        self.conflicts = 0
        self.kinds: Counter[str] = Counter()  # conflicted transactions, by the kind of item held: COUNTER or IMAGE
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb.TransactWriteItems", self._before)
        client.meta.events.register("after-call.dynamodb.TransactWriteItems", self._after)
        client.meta.events.register("after-call-error.dynamodb.TransactWriteItems", self._after)

    @staticmethod
    def _keys(params: dict[str, Any]) -> list[tuple[str, str]]:
        keys = []
        for entry in json.loads(params["body"])["TransactItems"]:
            ((operation, details),) = entry.items()
            key = details["Item"] if operation == "Put" else details["Key"]
            keys.append((key["pk"]["S"], key["sk"]["S"]))
        return keys

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        keys = self._keys(params)
        with self._lock:
            self.transactions += 1
            held = [key in self._in_flight for key in keys]
            if not any(held):
                self._in_flight.update(keys)
                context["in_flight"] = keys
                return None
            self.conflicts += 1
            self.kinds.update({key[1].split("#")[0] for key, busy in zip(keys, held, strict=True) if busy})
        reasons = [{"Code": "TransactionConflict" if busy else "None"} for busy in held]
        parsed = {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("http://conflict.invalid/", 400, {}, None), parsed

    def _after(self, context: dict[str, Any], **_: Any) -> None:
        keys = context.pop("in_flight", None)
        if keys:
            with self._lock:
                self._in_flight.subtract(keys)
                self._in_flight += Counter()  # drop the keys no transaction holds any more


def batches(total: int, size: int, seed: int) -> list[list[int]]:
    """The request's images in batches, with what SQS does to them: an image now and then delivered again in a
    later batch or twice in the same one, and a whole batch now and then delivered again, right beside its first
    delivery (two writers on it at once) or a little later."""
    chooser = random.Random(seed)
    images = list(range(total))
    delivered: list[list[int]] = []
    for start in range(0, total, size):
        batch = images[start : start + size]
        if start and chooser.random() < 0.3:
            batch.append(chooser.randrange(start))  # an earlier image again
        if chooser.random() < 0.1:
            batch.append(batch[0])  # the same image twice in one batch
        delivered.append(batch)
    for batch in list(delivered):
        if chooser.random() < 0.1:
            at = delivered.index(batch) + 1 + chooser.choice([0, 0, 5, 20])
            delivered.insert(min(at, len(delivered)), list(batch))
    return delivered


def saved(n: int) -> Savings:
    return Savings(10, 4, 0) if n % 7 != 0 else NO_SAVINGS  # a failed image saves nothing


def test_many_concurrent_writers_count_exactly_once_and_flip_once_without_a_conflict_storm(
    dynamodb_local_endpoint: str,
) -> None:
    """GIVEN a request of 2,000 images counted by 8 writers at once (each its own container), in batches of 10,
    with duplicate deliveries mixed in, and DynamoDB's conflict rule applied WHEN every batch is counted THEN
    each image is counted exactly once, the counts are exact, the completion flip happens once (one stream record
    matches the notify filter), and conflicts stay rare: each writer keeps to its own shard."""
    total, writers = 2000, 8
    name = f"contended-{threading.get_ident()}"
    client, streams, stream_arn = own_table(dynamodb_local_endpoint, name)
    conflicts = TransactionConflicts(client)
    DynamoLedger(client, name).open("hot", total, NOW)
    work: queue.Queue[list[int]] = queue.Queue()
    for batch in batches(total, 10, seed=17):
        work.put(batch)
    counted: Counter[int] = Counter()
    completed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        ledger = DynamoLedger(client, name, rng=random.Random(number))  # one per container
        while True:
            try:
                batch = work.get_nowait()
            except queue.Empty:
                return
            try:
                results = ledger.count_many([count(n, n % 7 != 0, "hot", saved(n)) for n in batch], NOW)
            except Exception as exc:  # a batch not counted (LedgerError: every attempt conflicted) fails the test
                with lock:
                    errors.append(exc)
                return
            with lock:
                counted.update(n for n, result in zip(batch, results, strict=True) if result.counted)
                completed.extend(n for n, result in zip(batch, results, strict=True) if result.completed)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(counted) == list(range(total)) and set(counted.values()) == {1}  # none lost, none twice
    succeeded = sum(n % 7 != 0 for n in range(total))
    assert DynamoLedger(client, name).counts("hot") == Counts(
        total, succeeded, total - succeeded, Savings(10 * succeeded, 4 * succeeded, 0)
    )
    assert len(completed) == 1
    assert len(completions(stream_records(streams, stream_arn))) == 1
    # Not a storm: on one counter item, every transaction in flight beside another conflicts. Here each writer
    # soon has a shard of its own, and what conflicts is mostly one batch taken by two writers at once.
    print(f"\nconflicts: {conflicts.conflicts} of {conflicts.transactions} transactions, on {dict(conflicts.kinds)}")
    assert conflicts.kinds["COUNTER"] <= 2 * writers, conflicts.kinds
    assert conflicts.conflicts * 4 < conflicts.transactions, (conflicts.conflicts, conflicts.transactions)
