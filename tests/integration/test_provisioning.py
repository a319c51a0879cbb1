"""Provisioning converges, as CloudFormation updates a stack: against the local cloud's servers over HTTP (the
AWS emulator for S3 and SQS; DynamoDB Local), a second run with other settings updates what
differs in place, says what it changed in one line each, and keeps every message, object and item."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from infra.topology import TOPOLOGY, Queue, Topology
from localcloud.provision import KEYS, Resources, provision


def named(topology: Topology = TOPOLOGY) -> Topology:
    """The topology under names of its own (the servers are shared by the session)."""
    run = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        topology,
        uploads_bucket=f"conv-{run}-uploads",
        processed_bucket=f"conv-{run}-processed",
        requests_table=f"conv-{run}-requests",
        images_queue=dataclasses.replace(
            topology.images_queue, name=f"conv-{run}-images", dead_letter_name=f"conv-{run}-images-dlq"
        ),
        chunks_queue=dataclasses.replace(
            topology.chunks_queue, name=f"conv-{run}-chunks", dead_letter_name=f"conv-{run}-chunks-dlq"
        ),
        webhooks_queue=dataclasses.replace(
            topology.webhooks_queue, name=f"conv-{run}-webhooks", dead_letter_name=f"conv-{run}-webhooks-dlq"
        ),
        upload_notification=dataclasses.replace(topology.upload_notification, failures_queue=f"conv-{run}-failures"),
    )


@pytest.fixture
def clients(aws_endpoint: str, dynamodb_local_endpoint: str) -> dict[str, Any]:
    return {
        "s3": boto3.client("s3", endpoint_url=aws_endpoint),
        "sqs": boto3.client("sqs", endpoint_url=aws_endpoint),
        "dynamodb": boto3.client("dynamodb", endpoint_url=dynamodb_local_endpoint),
    }


def run(topology: Topology, clients: dict[str, Any], origins: tuple[str, ...] = ()) -> tuple[Resources, list[str]]:
    changes: list[str] = []
    resources = provision(
        topology, clients["s3"], clients["sqs"], clients["dynamodb"], web_origins=origins, report=changes.append
    )
    return resources, changes


def test_a_restart_with_other_settings_updates_in_place_says_what_changed_and_keeps_the_state(
    clients: dict[str, Any],
) -> None:
    s3, sqs, dynamodb = clients["s3"], clients["sqs"], clients["dynamodb"]
    topology = named()
    first, created = run(topology, clients, ("http://127.0.0.1:5000",))
    # 3 queues and their DLQs, the S3 events queue, the ingest failures queue, 2 buckets, the table
    assert sum(line.startswith("created ") for line in created) == 11
    # What a running cloud holds by then: a queued message, a stored object, an item.
    sqs.send_message(QueueUrl=first.queue_url, MessageBody="queued before the restart")
    s3.put_object(Bucket=first.uploads_bucket, Key="kept.csv", Body=b"kept")
    dynamodb.put_item(TableName=first.table, Item={"pk": {"S": "req-1"}, "sk": {"S": "COUNTER"}})

    again, unchanged = run(topology, clients, ("http://127.0.0.1:5000",))
    assert unchanged == [] and again == first

    changed = dataclasses.replace(
        topology,
        images_queue=dataclasses.replace(topology.images_queue, visibility_timeout_s=5, max_receive_count=3),
        uploads_retention_days=7,
    )
    resources, changes = run(changed, clients, ("http://127.0.0.1:5001",))  # was a QueueNameExists
    images, dead_letters = topology.images_queue.name, topology.images_queue.dead_letter_name
    assert changes == [
        f"queue {images}: VisibilityTimeout 360 -> 5",
        f"queue {images}: RedrivePolicy maxReceiveCount=5 to {dead_letters} -> maxReceiveCount=3 to {dead_letters}",
        f"bucket {topology.uploads_bucket}: objects expire after 30 days -> 7 days",
        f"bucket {topology.uploads_bucket}: CORS origins http://127.0.0.1:5000 -> http://127.0.0.1:5001",
    ]
    assert resources == first
    attributes = sqs.get_queue_attributes(QueueUrl=resources.queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "5"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] in (3, "3")
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=resources.uploads_bucket)["Rules"]
    assert rule["Expiration"]["Days"] == 7
    [cors] = s3.get_bucket_cors(Bucket=resources.uploads_bucket)["CORSRules"]
    assert cors["AllowedOrigins"] == ["http://127.0.0.1:5001"]
    # Nothing stored was touched.
    [message] = sqs.receive_message(QueueUrl=resources.queue_url, WaitTimeSeconds=1)["Messages"]
    assert message["Body"] == "queued before the restart"
    assert s3.get_object(Bucket=resources.uploads_bucket, Key="kept.csv")["Body"].read() == b"kept"
    key = {"pk": {"S": "req-1"}, "sk": {"S": "COUNTER"}}
    assert dynamodb.get_item(TableName=resources.table, Key=key)["Item"] == key


def test_a_table_made_without_its_stream_and_ttl_gets_them(clients: dict[str, Any]) -> None:
    """A table as an older version (or a hand) made it: the stream the notify function needs and the TTL are
    turned on in place, its items kept."""
    dynamodb = clients["dynamodb"]
    topology = named()
    dynamodb.create_table(
        TableName=topology.requests_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": key["AttributeName"], "AttributeType": "S"} for key in KEYS],
        KeySchema=KEYS,
    )
    dynamodb.put_item(TableName=topology.requests_table, Item={"pk": {"S": "old"}, "sk": {"S": "COUNTER"}})
    resources, changes = run(topology, clients)
    table = topology.requests_table
    assert [line for line in changes if line.startswith(f"table {table}")] == [
        f"table {table}: stream off -> NEW_AND_OLD_IMAGES",
        f"table {table}: TTL attribute off -> expiresAt",
    ]
    description = dynamodb.describe_table(TableName=table)["Table"]
    assert description["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert resources.stream_arn == description["LatestStreamArn"]
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiresAt")
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "old"}, "sk": {"S": "COUNTER"}}).get("Item")


@dataclass(frozen=True)
class WithAnotherQueue(Topology):
    """The topology with one more queue, as a later change would add it (a field of type Queue; the webhooks
    queue came so)."""

    exports_queue: Queue = dataclasses.field(
        default=Queue("conv-exports", "conv-exports-dlq", visibility_timeout_s=30, max_receive_count=4)
    )


def test_a_queue_added_to_the_topology_is_provisioned_and_given_to_the_functions(clients: dict[str, Any]) -> None:
    base = named()
    run_id = base.uploads_bucket.split("-")[1]
    topology = WithAnotherQueue(
        **{field.name: getattr(base, field.name) for field in dataclasses.fields(Topology)},
        exports_queue=Queue(f"conv-{run_id}-exports", f"conv-{run_id}-exports-dlq", 30, 4),
    )
    resources, changes = run(topology, clients)
    assert f"created queue conv-{run_id}-exports" in changes
    url = resources.environment()["EXPORTS_QUEUE_URL"]
    attributes = clients["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "30"
    assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].endswith(f"conv-{run_id}-exports-dlq")
    assert resources.queues["exports_queue"].url == url
