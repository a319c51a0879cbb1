"""The DynamoDB ledger against moto, and against both servers the local cloud may use (its moto emulator, DynamoDB
Local): each image counted once, the last count completes the request, a cancelled count leaves no trace."""

from __future__ import annotations

import threading

import boto3
import pytest

from ips.adapters.dynamodb import COMPLETION_FILTER, DynamoLedger
from ips.model import Counts, ImageTask
from localcloud.provision import Resources
from localcloud.runners import matches, stream_event_record


@pytest.fixture
def ledger(aws: Resources) -> DynamoLedger:
    return DynamoLedger(boto3.client("dynamodb"), aws.table)


def task(index: int, request_id: str = "req-1") -> ImageTask:
    return ImageTask(request_id, 2, index, f"https://a.example/{index}.jpg", "salt")


def test_each_image_counts_once_and_the_last_one_completes(ledger: DynamoLedger) -> None:
    assert ledger.open("req-1", 3)
    assert not ledger.open("req-1", 3)  # a repeated fan-out keeps the counter
    first = ledger.count(task(0), succeeded=True)
    again = ledger.count(task(0), succeeded=False)
    second = ledger.count(task(1), succeeded=False)
    last = ledger.count(task(2), succeeded=True)
    assert (first.counted, first.completed) == (True, False)
    assert (again.counted, again.completed) == (False, False)
    assert (second.counted, second.completed) == (True, False)
    assert (last.counted, last.completed) == (True, True)
    assert ledger.counts("req-1") == Counts(total=3, succeeded=2, failed=1)
    assert ledger.count(task(2), succeeded=True).counted is False


def test_concurrent_counting_is_exact(dynamodb_endpoint: str) -> None:
    """Against the local cloud's DynamoDB servers over HTTP, from several threads: the counter's conditions must
    hold under real concurrency (moto's in-process mock is not the thing to test atomicity on)."""
    from botocore.config import Config

    from ips.adapters.dynamodb import DynamoLedger
    from localcloud.provision import requests_table

    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, config=Config(max_pool_connections=50))
    table = f"ledger-{threading.get_ident()}-{id(client)}"
    requests_table(table, client)
    ledger = DynamoLedger(client, table)
    total = 24
    ledger.open("req-1", total)
    results = []
    lock = threading.Lock()

    def count(index: int) -> None:
        result = ledger.count(task(index % total), succeeded=index % 3 != 0)
        with lock:
            results.append(result)

    # Every image twice, from several threads at once.
    threads = [threading.Thread(target=count, args=(index,)) for index in range(total * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result.counted for result in results) == total
    assert sum(result.completed for result in results) == 1
    counts = ledger.counts("req-1")
    assert counts is not None and counts.done == total


def test_only_the_completing_update_passes_the_stream_filter(aws: Resources, ledger: DynamoLedger) -> None:
    ledger.open("req-1", 2)
    ledger.count(task(0), succeeded=True)
    ledger.count(task(1), succeeded=True)
    streams = boto3.client("dynamodbstreams")
    [shard] = streams.describe_stream(StreamArn=aws.stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=aws.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = [
        stream_event_record(record, aws.stream_arn) for record in streams.get_records(ShardIterator=iterator)["Records"]
    ]
    # open, then for each image a marker and a counter update
    assert len(records) == 5
    selected = [record for record in records if matches(COMPLETION_FILTER, record)]
    assert len(selected) == 1
    assert selected[0]["dynamodb"]["NewImage"]["remaining"] == {"N": "0"}


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
    ledger.open("req-1", 3)
    ledger.count(task(0), succeeded=True)
    assert runner.poll_once() and seen == []
    assert not ledger.count(task(0), succeeded=True).counted  # a duplicate: its transaction is cancelled
    ledger.count(task(1), succeeded=True)
    assert ledger.count(task(2), succeeded=True).completed
    runner.poll_once()
    assert [record["dynamodb"]["Keys"]["pk"]["S"] for record in seen] == ["req-1"]


def test_a_cancelled_transaction_leaves_no_trace_in_the_emulator(dynamodb_endpoint: str) -> None:
    """The moto emulator rolls a cancelled transaction back item by item (not by copying whole tables); on both
    servers the counter, the markers and the stream must look as if the duplicate never came."""
    from ips.adapters.dynamodb import DynamoLedger
    from localcloud.provision import requests_table

    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_endpoint)
    table = f"rollback-{threading.get_ident()}"
    stream_arn = requests_table(table, client)
    ledger = DynamoLedger(client, table)
    ledger.open("req-1", 2)
    assert ledger.count(task(0), succeeded=True).counted
    assert not ledger.count(task(0), succeeded=False).counted
    assert ledger.counts("req-1") == Counts(total=2, succeeded=1, failed=0)
    items = client.query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "req-1"}}
    )["Items"]
    assert sorted(item["sk"]["S"] for item in items) == ["COUNTER", "IMAGE#2#0"]
    assert ledger.count(task(1), succeeded=True).completed
    [shard] = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    events = [
        (record["eventName"], record["dynamodb"]["Keys"]["sk"]["S"])
        for record in streams.get_records(ShardIterator=iterator)["Records"]
    ]
    assert events == [
        ("INSERT", "COUNTER"),
        ("INSERT", "IMAGE#2#0"),
        ("MODIFY", "COUNTER"),
        ("INSERT", "IMAGE#2#1"),
        ("MODIFY", "COUNTER"),
    ]
