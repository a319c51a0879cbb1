"""What the adapters retry themselves (ips_adapters.retries, tenacity), against moto: the partial failures and
transaction conflicts botocore cannot see. Those two failures are injected at the client, the one seam where a
local emulator cannot be made to produce them; everything else is the emulator's real answer."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from tenacity import RetryError

from ips_adapters.aws import SqsTaskQueue
from ips_adapters.dynamodb import DynamoQuotas, LedgerError
from ips_adapters.retries import Again, again
from localcloud.provision import Resources


class PartlyFailingSqs:
    """SQS whose batch sends fail some entries on its side (`SenderFault: false`) for the first `times` calls."""

    def __init__(self, failing: int, times: int, *, senders_fault: bool = False) -> None:
        self.client = boto3.client("sqs")
        self.failing, self.times, self.senders_fault = failing, times, senders_fault
        self.calls: list[int] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append(len(Entries))
        if len(self.calls) > self.times:
            return self.client.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
        sent, failed = Entries[self.failing :], Entries[: self.failing]
        answer = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=sent) if sent else {}
        failures = [{"Id": entry["Id"], "SenderFault": self.senders_fault, "Code": "InternalError"} for entry in failed]
        return {**answer, "Failed": failures}


class ConflictingDynamo:
    """DynamoDB whose first `times` transactions are cancelled by a conflict (as a concurrent writer causes)."""

    def __init__(self, times: int) -> None:
        self.client = boto3.client("dynamodb")
        self.exceptions = self.client.exceptions
        self.times, self.transactions = times, 0

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.transactions += 1
        if self.transactions <= self.times:
            reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(TransactItems) - 1)
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}}
            raise self.exceptions.TransactionCanceledException(
                {**error, "CancellationReasons": reasons}, "TransactWriteItems"
            )
        return self.client.transact_write_items(TransactItems=TransactItems)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def queued(queue_url: str) -> list[str]:
    sqs, bodies = boto3.client("sqs"), []
    while answer := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [message["Body"] for message in answer]
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in answer]
        )
    return bodies


def test_entries_sqs_failed_are_sent_again_and_arrive_once(aws: Resources) -> None:
    client = PartlyFailingSqs(failing=3, times=2)
    SqsTaskQueue(client, aws.queue_url).send([f"m{number}" for number in range(10)])
    assert client.calls == [10, 3, 3]  # only the failed entries again
    assert sorted(queued(aws.queue_url)) == sorted(f"m{number}" for number in range(10))


def test_sqs_failing_every_attempt_or_refusing_ours_raises(aws: Resources) -> None:
    client = PartlyFailingSqs(failing=2, times=99)
    with pytest.raises(RuntimeError, match="kept failing 2 message"):
        SqsTaskQueue(client, aws.queue_url, attempts=3).send(["a", "b", "c"])
    assert client.calls == [3, 2, 2]
    refusing = PartlyFailingSqs(failing=1, times=99, senders_fault=True)
    with pytest.raises(RuntimeError, match="refused"):
        SqsTaskQueue(refusing, aws.queue_url).send(["a"])
    assert refusing.calls == [1]  # our fault: not retried


def test_a_reservation_that_conflicts_is_retried_and_counted_once(aws: Resources) -> None:
    client = ConflictingDynamo(times=2)
    quotas = DynamoQuotas(client, aws.table)
    assert quotas.reserve("tenant", "req-1", 5, per_day=100, in_flight=100, day="2026-12-01") is None
    assert client.transactions == 3
    assert quotas.usage("tenant", "2026-12-01") == (5, 5)
    quotas.release("req-1")
    assert quotas.usage("tenant", "2026-12-01") == (5, 0)


def test_conflicts_past_the_budget_are_a_ledger_error(aws: Resources) -> None:
    quotas = DynamoQuotas(ConflictingDynamo(times=99), aws.table, attempts=3)
    with pytest.raises(LedgerError, match="after 3 attempts"):
        quotas.reserve("tenant", "req-1", 5, per_day=100, in_flight=100, day="2026-12-01")
    assert quotas.usage("tenant", "2026-12-01") == (0, 0)


def test_the_backoff_doubles_jitters_or_is_skipped_and_other_errors_go_through() -> None:
    def pauses_of(retrying: Any, *failures: Exception) -> list[float]:
        pauses: list[float] = []
        retrying.sleep = pauses.append
        remaining = list(failures)
        for attempt in retrying:
            with attempt:
                if remaining:
                    raise remaining.pop(0)
        return pauses

    assert pauses_of(again(5, 0.1, jitter=False), Again(), Again(), Again()) == pytest.approx([0.1, 0.2, 0.4])
    jittered = pauses_of(again(5, 0.05, jitter=True), Again(), Again(), Again())
    assert all(0 <= pause <= 0.05 * 2**n for n, pause in enumerate(jittered)) and len(jittered) == 3
    assert pauses_of(again(5, 0.1, jitter=False), Again(wait=False), Again()) == [0.0, pytest.approx(0.2)]
    with pytest.raises(RetryError):
        pauses_of(again(2, 0.1, jitter=False), Again(), Again())
    with pytest.raises(KeyError):
        pauses_of(again(5, 0.1, jitter=False), KeyError("not ours to retry"))
