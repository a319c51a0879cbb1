"""Create the topology's resources on an AWS endpoint (idempotent): buckets, queues + DLQs (images, chunks,
webhooks), the ingest failures queue, table + stream."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.topology import Queue, Topology
from ips.adapters.dynamodb import TTL_ATTRIBUTE


@dataclass(frozen=True)
class Resources:
    uploads_bucket: str
    processed_bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_url: str
    chunks_queue_url: str
    chunks_queue_arn: str
    chunks_dead_letter_url: str
    webhooks_queue_url: str
    webhooks_queue_arn: str
    webhooks_dead_letter_url: str
    ingest_failures_url: str  # the ingest function's on-failure destination (AWS's is the stack's queue)
    table: str
    stream_arn: str
    upload_events_url: str  # S3 notifications of the uploads bucket (a queue, where AWS invokes the function)

    def environment(self) -> dict[str, str]:
        """The variables the functions find their resources by (the CDK stack sets the same names)."""
        return {
            "UPLOADS_BUCKET": self.uploads_bucket,
            "PROCESSED_BUCKET": self.processed_bucket,
            "IMAGES_QUEUE_URL": self.queue_url,
            "CHUNKS_QUEUE_URL": self.chunks_queue_url,
            "WEBHOOKS_QUEUE_URL": self.webhooks_queue_url,
            "REQUESTS_TABLE": self.table,
            "DEAD_LETTER_QUEUE_URLS": ",".join(
                (self.dead_letter_url, self.chunks_dead_letter_url, self.webhooks_dead_letter_url)
            ),
            "INGEST_FAILURES_QUEUE_URL": self.ingest_failures_url,
        }


def provision(topology: Topology, s3: Any, sqs: Any, dynamodb: Any, *, web_origins: Sequence[str] = ()) -> Resources:
    for bucket, days in (
        (topology.uploads_bucket, topology.uploads_retention_days),
        (topology.processed_bucket, topology.processed_retention_days),
    ):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_lifecycle_configuration(  # the same expiry rule as the CDK stack's buckets
            Bucket=bucket,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "retention",
                        "Status": "Enabled",
                        "Filter": {"Prefix": ""},
                        "Expiration": {"Days": days},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        )
    if web_origins:
        s3.put_bucket_cors(Bucket=topology.uploads_bucket, CORSConfiguration=uploads_cors(web_origins))
    queue_url, queue_arn, dead_letter_url = _queue(topology.images_queue, sqs)
    chunks_url, chunks_arn, chunks_dead_letter_url = _queue(topology.chunks_queue, sqs)
    webhooks_url, webhooks_arn, webhooks_dead_letter_url = _queue(topology.webhooks_queue, sqs)
    retention = str(topology.images_queue.retention_days * 86_400)
    ingest_failures_url = sqs.create_queue(
        QueueName=topology.upload_notification.failures_queue, Attributes={"MessageRetentionPeriod": retention}
    )["QueueUrl"]
    upload_events_url = _upload_notifications(topology, s3, sqs)
    return Resources(
        uploads_bucket=topology.uploads_bucket,
        processed_bucket=topology.processed_bucket,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_url=dead_letter_url,
        chunks_queue_url=chunks_url,
        chunks_queue_arn=chunks_arn,
        chunks_dead_letter_url=chunks_dead_letter_url,
        webhooks_queue_url=webhooks_url,
        webhooks_queue_arn=webhooks_arn,
        webhooks_dead_letter_url=webhooks_dead_letter_url,
        ingest_failures_url=ingest_failures_url,
        table=topology.requests_table,
        stream_arn=_requests_table(topology.requests_table, dynamodb),
        upload_events_url=upload_events_url,
    )


def _queue(queue: Queue, sqs: Any) -> tuple[str, str, str]:
    """The queue and its DLQ, as the CDK stack makes them: (url, arn, the DLQ's url)."""
    retention = str(queue.retention_days * 86_400)
    dead_letter_url = sqs.create_queue(
        QueueName=queue.dead_letter_name, Attributes={"MessageRetentionPeriod": retention}
    )["QueueUrl"]
    dead_letter_arn = _arn(sqs, dead_letter_url)
    url = sqs.create_queue(
        QueueName=queue.name,
        Attributes={
            "VisibilityTimeout": str(queue.visibility_timeout_s),
            "MessageRetentionPeriod": retention,
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(queue.max_receive_count)}
            ),
        },
    )["QueueUrl"]
    return url, _arn(sqs, url), dead_letter_url


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def uploads_cors(web_origins: Sequence[str]) -> dict[str, Any]:
    """The upload page POSTs files straight to the uploads bucket (the presigned POST): only from its origins.
    One rule (the CDK stack's): moto refuses a preflight that any rule of several does not match."""
    return {
        "CORSRules": [
            {
                "AllowedOrigins": list(web_origins),
                "AllowedMethods": ["POST", "GET"],  # the page uploads, and saves the output CSV
                "AllowedHeaders": ["*"],
                "MaxAgeSeconds": 600,
            }
        ]
    }


def _upload_notifications(topology: Topology, s3: Any, sqs: Any) -> str:
    """moto delivers S3 event notifications to SQS (not to functions): a queue carries them to the runner."""
    url = sqs.create_queue(QueueName=f"{topology.uploads_bucket}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=topology.uploads_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": topology.upload_notification.prefix}]}
                    },
                }
            ]
        },
    )
    return url


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
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    return description["LatestStreamArn"]
