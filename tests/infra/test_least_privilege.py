"""Each function's role allows exactly what its code calls, on exactly its resources; no wildcard that could be
narrower. Written out here by hand, independently of infra/permissions.py, so a grant cannot grow unnoticed."""

from __future__ import annotations

import json
import re

import pytest

from infra.topology import TOPOLOGY

LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
SECRET = {"secretsmanager:GetSecretValue"}
QUEUE_CONSUMER = {
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
}
DESTINATION = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}  # Lambda's on-failure queues
STREAM = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
# Actions without resource-level permissions: the only ones allowed on "*".
UNSCOPED = XRAY | {"dynamodb:ListStreams"}

# function -> {(resource kind, object key pattern or None): actions}
EXPECTED = {
    "upload": {
        ("uploads", "*/input.csv"): {"s3:PutObject"},
        ("uploads", "incoming/*.csv"): {"s3:PutObject"},  # the presigned POST is signed with this grant
        ("chunks", None): {"sqs:SendMessage"},  # the fan-out: chunks, never image tasks
        # the request, and its images reserved against the key's quotas (released if the store fails); a failed
        # fan-out: OPEN -> FAILED
        ("table", None): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        ("mongodb", None): SECRET,
    },
    "status": {
        ("uploads", "*/output.csv"): {"s3:GetObject"},  # the output CSV's presigned GET is signed with it
        ("table", None): {"dynamodb:GetItem"},
        ("mongodb", None): SECRET,
    },
    "secret": {("mongodb", None): SECRET, ("webhook", None): SECRET},  # the master; the generation in MongoDB
    "process": {  # no CSV and no sending: chunks are the expand function's
        # images in every output format; read too, as the source of a reused image's server-side copy
        ("processed", "*.jpg"): {"s3:PutObject", "s3:GetObject"},
        ("processed", "*.webp"): {"s3:PutObject", "s3:GetObject"},
        ("processed", "*.avif"): {"s3:PutObject", "s3:GetObject"},
        # a copy from a source that expired answers 404 (what ips.processing.reuse falls back on), not 403, only with
        # this
        ("processed", None): {"s3:ListBucket"},
        ("images", None): QUEUE_CONSUMER,
        ("table", None): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        ("mongodb", None): SECRET,
    },
    "expand": {
        ("uploads", "*/input.csv"): {"s3:GetObject"},  # a chunk's rows: a byte range of the direct CSV
        ("uploads", "*/input-*.csv"): {"s3:GetObject"},  # ... or of a presigned upload's pinned copy
        ("chunks", None): QUEUE_CONSUMER | {"sqs:SendMessage"},  # the rest of a chunk re-queued when out of time
        ("images", None): {"sqs:SendMessage"},
        # the chunk's progress (Get, Update); a chunk failing every delivery is the reconciler's (its DLQ)
        ("table", None): {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        ("mongodb", None): SECRET,
    },
    "ingest": {  # no webhook secret: a refused upload reaches notify through the counter's OPEN -> FAILED
        ("uploads", "incoming/*.csv"): {"s3:GetObject"},
        ("uploads", "*/input-*.csv"): {"s3:GetObject", "s3:PutObject"},  # CopyObject pins what is ingested
        ("chunks", None): {"sqs:SendMessage"},
        ("table", None): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        ("mongodb", None): SECRET,
        ("ingest-failures", None): DESTINATION,
    },
    "reconcile": {  # no webhook secret: it wakes webhook deliveries, it never sends one
        ("uploads", "*/input.csv"): {"s3:GetObject"},  # re-plan a CSV to re-queue its lost chunks
        # ... or a presigned upload's pinned copy; a failed ingestion run again pins it (CopyObject)
        ("uploads", "*/input-*.csv"): {"s3:GetObject", "s3:PutObject"},
        ("uploads", "incoming/*.csv"): {"s3:GetObject"},  # is an expired upload's file there? (and ingest it)
        ("uploads", None): {"s3:ListBucket"},  # ... which HeadObject answers with 404, not 403, only with this
        # a completion the stream lost (private); a failed multipart write of a big one is aborted
        ("uploads", "*/output.csv"): {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
        ("images", None): {"sqs:SendMessage", "sqs:GetQueueAttributes"},  # lost work re-queued; the depth
        # ... and chunks not fully expanded; its depth too (chunks queued or in flight are not lost work)
        ("chunks", None): {"sqs:SendMessage", "sqs:GetQueueAttributes"},
        ("webhooks", None): {"sqs:SendMessage"},  # lost wake-ups replaced, dead ones put back
        ("images-dlq", None): {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        ("chunks-dlq", None): {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        ("webhooks-dlq", None): {"sqs:ReceiveMessage", "sqs:DeleteMessage"},
        ("ingest-failures", None): {"sqs:ReceiveMessage", "sqs:DeleteMessage"},  # ingested again
        # ... and the round's lease (Put if free or run out, Update to give it back)
        ("table", None): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        ("mongodb", None): SECRET,
    },
    "notify": {  # no webhook secret: it queues the webhook's first wake-up
        # private; a failed multipart write of a big one is aborted
        ("uploads", "*/output.csv"): {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
        ("table", None): {"dynamodb:GetItem", "dynamodb:UpdateItem"},  # the images leave flight
        ("stream", None): STREAM,
        ("webhooks", None): {"sqs:SendMessage"},
        ("mongodb", None): SECRET,
        ("completion-failures", None): DESTINATION,
    },
    "webhook": {  # the only function that signs and sends webhooks
        ("uploads", "*/output.csv"): {"s3:GetObject"},  # the webhook's presigned GET is signed with it
        ("webhooks", None): QUEUE_CONSUMER | {"sqs:SendMessage"},  # its event source; the next wake-up
        ("mongodb", None): SECRET,
        ("webhook", None): SECRET,
    },
}


# Logical id prefix -> the resource kind the expectations speak of.
KINDS = {
    "StorageUploads": "uploads",
    "StorageProcessed": "processed",
    "PipelineImagesAB": "images",
    "PipelineImagesDeadLetters": "images-dlq",
    "PipelineIngestFailures": "ingest-failures",
    "FanoutChunks": "chunks",
    "FanoutChunksDeadLetters": "chunks-dlq",
    "WebhooksQueue": "webhooks",
    "WebhooksDeadLetters": "webhooks-dlq",
    "CompletionCompletionFailures": "completion-failures",
    "CompletionRequests": "table",  # the requests table keeps its first logical id (requests_table.py)
    "SecretsMongoDbUri": "mongodb",
    "SecretsWebhookSigningSecret": "webhook",
}


def kind_of(logical_id):
    """The kind of the longest prefix that matches (FanoutChunksDeadLetters... is the DLQ, not the queue)."""
    prefix = max((prefix for prefix in KINDS if logical_id.startswith(prefix)), key=len)
    return KINDS[prefix]


def resource_key(resource):
    """(kind, key pattern) of one policy resource."""
    if resource == "*":
        return "*", None
    if "Fn::Join" in resource:
        bucket, suffix = resource["Fn::Join"][1]
        return kind_of(bucket["Fn::GetAtt"][0]), suffix.removeprefix("/")
    if "Ref" in resource:
        return kind_of(resource["Ref"]), None
    logical_id, attribute = resource["Fn::GetAtt"]
    if attribute == "StreamArn":
        return "stream", None
    if logical_id.startswith("Functions") and "Logs" in logical_id:
        return "logs", None
    return kind_of(logical_id), None


def grants(synthesized, function):
    role = synthesized.resources[synthesized.function_id(function)]["Properties"]["Role"]["Fn::GetAtt"][0]
    found: dict = {}
    attached = [
        p for p in synthesized.of_type("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
    ]
    assert len(attached) == 1
    assert "ManagedPolicyArns" not in synthesized.resources[role]["Properties"]
    for statement in attached[0]["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow" and "Condition" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            found.setdefault(resource_key(resource), set()).update(actions)
    return found


CDK_BUCKET_DEPLOYMENT = "CustomCDKBucketDeployment"


@pytest.mark.parametrize("function", [spec.name for spec in TOPOLOGY.functions])
def test_each_function_gets_exactly_the_grants_it_uses(synthesized, function):
    found = grants(synthesized, function)
    assert found.pop(("logs", None)) == LOGS  # its own log group only
    unscoped = found.pop(("*", None))
    assert unscoped == (UNSCOPED if function == TOPOLOGY.stream_source.function else XRAY)
    assert found == EXPECTED[function]


def test_every_topology_function_has_expectations():
    assert set(EXPECTED) == {spec.name for spec in TOPOLOGY.functions}


def test_no_wildcard_actions_and_star_resources_only_for_unscoped_actions(synthesized):
    for logical_id, policy in synthesized.of_type("AWS::IAM::Policy").items():
        if logical_id.startswith(CDK_BUCKET_DEPLOYMENT):
            continue  # CDK's own deploy-time copier of the upload page: checked below
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if "*" in a], actions
            if statement["Resource"] == "*":
                assert set(actions) <= UNSCOPED, actions


def test_the_stack_attaches_no_managed_policy_but_to_cdk_and_api_gateway_service_roles(synthesized):
    managed = {
        lid: json.dumps(role["Properties"]["ManagedPolicyArns"])
        for lid, role in synthesized.of_type("AWS::IAM::Role").items()
        if "ManagedPolicyArns" in role["Properties"]
    }
    assert sorted(managed) == sorted(
        lid
        for lid in managed
        if lid.startswith(("BucketNotificationsHandler", "ApiRestApiCloudWatchRole", CDK_BUCKET_DEPLOYMENT))
    )
    assert len(managed) == 3


def test_the_page_deployment_reaches_only_cdks_assets_and_the_site_bucket(synthesized):
    (policy,) = [
        p for lid, p in synthesized.of_type("AWS::IAM::Policy").items() if lid.startswith(CDK_BUCKET_DEPLOYMENT)
    ]
    resources = json.dumps([statement["Resource"] for statement in policy["Properties"]["PolicyDocument"]["Statement"]])
    site = next(lid for lid in synthesized.of_type("AWS::S3::Bucket") if lid.startswith("WebPageSite"))
    buckets = set(re.findall(r'"Fn::GetAtt": \["(\w+)", "Arn"\]', resources))
    assert buckets == {site}
    assert "cdk-hnb659fds-assets" in resources
    for other in ("StorageUploads", "StorageProcessed", "StorageAccessLogs"):
        assert other not in resources
