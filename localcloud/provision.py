"""Create the topology's resources on an AWS endpoint (idempotent): buckets, queue + DLQ, table + stream."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from infra.topology import Topology


@dataclass(frozen=True)
class Resources:
    uploads_bucket: str
    processed_bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_url: str
    table: str
    stream_arn: str

    def environment(self) -> dict[str, str]:
        """The variables the functions find their resources by (the CDK stack sets the same names)."""
        return {
            "UPLOADS_BUCKET": self.uploads_bucket,
            "PROCESSED_BUCKET": self.processed_bucket,
            "IMAGES_QUEUE_URL": self.queue_url,
            "REQUESTS_TABLE": self.table,
        }


def provision(topology: Topology, s3: Any, sqs: Any, dynamodb: Any) -> Resources:
    for bucket in (topology.uploads_bucket, topology.processed_bucket):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
    queue = topology.images_queue
    dead_letter_url = sqs.create_queue(
        QueueName=queue.dead_letter_name, Attributes={"MessageRetentionPeriod": str(14 * 86_400)}
    )["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=queue.name,
        Attributes={
            "VisibilityTimeout": str(queue.visibility_timeout_s),
            "MessageRetentionPeriod": str(queue.retention_days * 86_400),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(queue.max_receive_count)}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Resources(
        uploads_bucket=topology.uploads_bucket,
        processed_bucket=topology.processed_bucket,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_url=dead_letter_url,
        table=topology.requests_table,
        stream_arn=_requests_table(topology.requests_table, dynamodb),
    )


def _requests_table(name: str, dynamodb: Any) -> str:
    try:
        description = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        description = dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
        )
    return description["LatestStreamArn"]
