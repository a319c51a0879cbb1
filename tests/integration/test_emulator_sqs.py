"""The local cloud's SQS emulator (localcloud.emulator_sqs) over HTTP: what a caller reads of a queue's
approximate counts is never older than its own call, though moto's own reads on each send are cached."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

COUNTS = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


def counts(sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNTS)["Attributes"]
    return int(attributes[COUNTS[0]]), int(attributes[COUNTS[1]])


def test_counts_read_right_after_a_send_a_receive_and_a_delete_are_current(aws_endpoint: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint)
    url = sqs.create_queue(QueueName=f"counts-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]
    assert counts(sqs, url) == (0, 0)
    for number in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{number}")
    assert counts(sqs, url) == (3, 0)  # within the second the send path caches its counts in
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    assert counts(sqs, url) == (2, 1)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert counts(sqs, url) == (2, 0)
