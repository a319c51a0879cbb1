"""Converge an AWS endpoint on the topology's resources: buckets, queues + DLQs (images, chunks, webhooks), the
ingest failures queue, tables + streams.

What is missing is created; what exists with other settings is updated in place, as CloudFormation updates a
stack (a queue's attributes and redrive, a table's stream and TTL, a bucket's lifecycle, CORS and
notification); what already matches is left alone, and nothing stored is touched. Every change is reported in
one line (`report`), so a restart with new settings (`LOCAL_VISIBILITY_TIMEOUT`, the retention days, the
gateway's port in the CORS origins) says what it changed. Only boto3 calls, so any endpoint serving the AWS APIs
will do (moto, LocalStack, DynamoDB Local).

The topology is read generically: every field of type `Queue` is provisioned with its DLQ and given to the
functions as `<FIELD>_URL` (images_queue: IMAGES_QUEUE_URL), and every table of `tables(topology)`, so a
queue or a table added to the topology converges with the rest."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from infra.topology import Queue, Topology
from ips_adapters.dynamodb import TTL_ATTRIBUTE

Report = Callable[[str], None]  # one line per change made


def _quiet(line: str) -> None:
    pass


class ProvisioningError(RuntimeError):
    """A resource differs in a way that cannot be updated in place (a table's keys)."""


@dataclass(frozen=True)
class Table:
    """A DynamoDB table as both runtimes make it: string keys `pk` (hash) and `sk` (range), billed per request."""

    name: str
    stream_view_type: str | None = None  # its stream's view (None: no stream)
    ttl_attribute: str | None = None  # items expire at the epoch second this attribute holds


def tables(topology: Topology) -> tuple[Table, ...]:
    """The topology's tables (a table added to the topology is added here): the requests table, whose stream
    feeds the notify function and whose items expire by TTL (the CDK stack's RequestsTable)."""
    return (Table(topology.requests_table, stream_view_type="NEW_AND_OLD_IMAGES", ttl_attribute=TTL_ATTRIBUTE),)


def queues(topology: Topology) -> dict[str, Queue]:
    """Every queue of the topology, by its field's name (images_queue, chunks_queue, ...)."""
    return {
        field.name: value
        for field in dataclasses.fields(topology)
        if isinstance(value := getattr(topology, field.name), Queue)
    }


def queue_variable(field: str) -> str:
    """The variable a queue's URL is given to the functions in (the CDK stack sets the same names)."""
    return f"{field.upper()}_URL"


@dataclass(frozen=True)
class ProvisionedQueue:
    url: str
    arn: str
    dead_letter_url: str


# The queues whose dead letters the reconciler settles (put back, or an image's or a chunk's failure, a webhook's
# wake-up dropped): DEAD_LETTER_QUEUE_URLS.
SETTLED_DEAD_LETTERS = ("images_queue", "chunks_queue", "webhooks_queue")


@dataclass(frozen=True)
class Resources:
    uploads_bucket: str
    processed_bucket: str
    queues: Mapping[str, ProvisionedQueue]  # by the topology's field: images_queue, chunks_queue, ...
    table: str
    stream_arn: str
    upload_events_url: str  # S3 notifications of the uploads bucket (a queue, where AWS invokes the function)
    ingest_failures_url: str  # the ingest function's on-failure destination (AWS's is the stack's queue)

    # The images, chunks and webhooks queues' (what the runners and the tests read).
    @property
    def queue_url(self) -> str:
        return self.queues["images_queue"].url

    @property
    def queue_arn(self) -> str:
        return self.queues["images_queue"].arn

    @property
    def dead_letter_url(self) -> str:
        return self.queues["images_queue"].dead_letter_url

    @property
    def chunks_queue_url(self) -> str:
        return self.queues["chunks_queue"].url

    @property
    def chunks_queue_arn(self) -> str:
        return self.queues["chunks_queue"].arn

    @property
    def chunks_dead_letter_url(self) -> str:
        return self.queues["chunks_queue"].dead_letter_url

    @property
    def webhooks_queue_url(self) -> str:
        return self.queues["webhooks_queue"].url

    @property
    def webhooks_queue_arn(self) -> str:
        return self.queues["webhooks_queue"].arn

    @property
    def webhooks_dead_letter_url(self) -> str:
        return self.queues["webhooks_queue"].dead_letter_url

    def environment(self) -> dict[str, str]:
        """The variables the functions find their resources by (the CDK stack sets the same names)."""
        return {
            "UPLOADS_BUCKET": self.uploads_bucket,
            "PROCESSED_BUCKET": self.processed_bucket,
            **{queue_variable(field): queue.url for field, queue in self.queues.items()},
            "REQUESTS_TABLE": self.table,
            "DEAD_LETTER_QUEUE_URLS": ",".join(
                self.queues[field].dead_letter_url for field in SETTLED_DEAD_LETTERS if field in self.queues
            ),
            "INGEST_FAILURES_QUEUE_URL": self.ingest_failures_url,
        }


def resource_variables(topology: Topology) -> tuple[str, ...]:
    """The names `Resources.environment()` will give the functions, known before anything is provisioned."""
    return (
        "UPLOADS_BUCKET",
        "PROCESSED_BUCKET",
        *(queue_variable(field) for field in queues(topology)),
        "REQUESTS_TABLE",
        "DEAD_LETTER_QUEUE_URLS",
        "INGEST_FAILURES_QUEUE_URL",
    )


def provision(
    topology: Topology,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    *,
    web_origins: Sequence[str] = (),
    report: Report = _quiet,
) -> Resources:
    provisioned = {field: _queue(queue, sqs, report) for field, queue in queues(topology).items()}
    for bucket, days in (
        (topology.uploads_bucket, topology.uploads_retention_days),
        (topology.processed_bucket, topology.processed_retention_days),
    ):
        _bucket(bucket, s3, report)
        _lifecycle(bucket, days, s3, report)
    _cors(topology.uploads_bucket, web_origins, s3, report)
    upload_events_url = _upload_notifications(topology, s3, sqs, report)
    retention = {"MessageRetentionPeriod": str(topology.images_queue.retention_days * 86_400)}
    ingest_failures_url = _sqs_queue(topology.upload_notification.failures_queue, retention, sqs, report)
    streams = {table.name: _table(table, dynamodb, report) for table in tables(topology)}
    return Resources(
        uploads_bucket=topology.uploads_bucket,
        processed_bucket=topology.processed_bucket,
        queues=provisioned,
        table=topology.requests_table,
        stream_arn=streams[topology.requests_table] or "",
        upload_events_url=upload_events_url,
        ingest_failures_url=ingest_failures_url,
    )


# -- queues ----------------------------------------------------------------------------------------------------


def _queue(queue: Queue, sqs: Any, report: Report) -> ProvisionedQueue:
    """The queue and its DLQ, as the CDK stack makes them."""
    retention = str(queue.retention_days * 86_400)
    dead_letter_url = _sqs_queue(queue.dead_letter_name, {"MessageRetentionPeriod": retention}, sqs, report)
    redrive = {"deadLetterTargetArn": _arn(sqs, dead_letter_url), "maxReceiveCount": queue.max_receive_count}
    attributes = {
        "VisibilityTimeout": str(queue.visibility_timeout_s),
        "MessageRetentionPeriod": retention,
        "RedrivePolicy": json.dumps(redrive),
    }
    url = _sqs_queue(queue.name, attributes, sqs, report)
    return ProvisionedQueue(url, _arn(sqs, url), dead_letter_url)


def _sqs_queue(name: str, attributes: dict[str, str], sqs: Any, report: Report) -> str:
    """The queue's URL, created with `attributes` or brought to them. (CreateQueue on an existing queue with
    other attributes fails with QueueNameExists: the attributes are compared and set instead.)"""
    try:
        url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        report(f"created queue {name}")
        return url
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    differing = {
        key: value for key, value in attributes.items() if _attribute(key, current.get(key)) != _attribute(key, value)
    }
    if differing:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=differing)
        for key, value in differing.items():
            report(f"queue {name}: {key} {_shown(key, current.get(key))} -> {_shown(key, value)}")
    return url


def _attribute(key: str, value: str | None) -> Any:
    """An attribute as compared: a redrive policy by its target and count (services write its JSON differently)."""
    if key != "RedrivePolicy" or not value:
        return value
    policy = json.loads(value)
    return policy.get("deadLetterTargetArn"), int(policy.get("maxReceiveCount", 0))


def _shown(key: str, value: str | None) -> str:
    if value is None:
        return "unset"
    if key == "RedrivePolicy":
        target, count = _attribute(key, value)
        return f"maxReceiveCount={count} to {str(target).rsplit(':', 1)[-1]}"
    return value


def _arn(sqs: Any, url: str) -> str:
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return arn


# -- buckets ---------------------------------------------------------------------------------------------------


def _bucket(name: str, s3: Any, report: Report) -> None:
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as missing:
        if _code(missing) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=name)
        report(f"created bucket {name}")


def _lifecycle(bucket: str, days: int, s3: Any, report: Report) -> None:
    """The CDK stack's expiry rule: objects expire `days` after they were written."""
    rule = {
        "ID": "retention",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }
    try:
        current = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as missing:
        if _code(missing) != "NoSuchLifecycleConfiguration":
            raise
        current = []
    if [_expiry(rule) for rule in current] == [_expiry(rule)]:
        return
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [rule]})
    before = ", ".join(f"{expiry} days" for _, expiry, _ in map(_expiry, current) if expiry) or "never"
    report(f"bucket {bucket}: objects expire after {before} -> {days} days")


def _expiry(rule: Mapping[str, Any]) -> tuple[str | None, int | None, int | None]:
    return (
        rule.get("Status"),
        rule.get("Expiration", {}).get("Days"),
        rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
    )


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


def _cors(bucket: str, web_origins: Sequence[str], s3: Any, report: Report) -> None:
    """The uploads bucket's CORS rule for the page's origins (none without origins)."""
    try:
        current = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    except ClientError as missing:
        if _code(missing) != "NoSuchCORSConfiguration":
            raise
        current = []
    wanted = uploads_cors(web_origins)["CORSRules"] if web_origins else []
    if [_cors_rule(rule) for rule in current] == [_cors_rule(rule) for rule in wanted]:
        return
    if wanted:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": wanted})
    else:
        s3.delete_bucket_cors(Bucket=bucket)
    before = ", ".join(origin for rule in current for origin in rule.get("AllowedOrigins", [])) or "none"
    after = ", ".join(web_origins) or "none"
    report(f"bucket {bucket}: CORS origins {before} -> {after}")


def _cors_rule(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        sorted(rule.get("AllowedOrigins", [])),
        sorted(rule.get("AllowedMethods", [])),
        sorted(rule.get("AllowedHeaders", [])),
        rule.get("MaxAgeSeconds"),
    )


def _upload_notifications(topology: Topology, s3: Any, sqs: Any, report: Report) -> str:
    """moto delivers S3 event notifications to SQS (not to functions): a queue carries them to the runner."""
    url = _sqs_queue(f"{topology.uploads_bucket}-events", {}, sqs, report)
    prefix = topology.upload_notification.prefix
    wanted = {
        "QueueArn": _arn(sqs, url),
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
    }
    current = s3.get_bucket_notification_configuration(Bucket=topology.uploads_bucket).get("QueueConfigurations", [])
    if [_notification(entry) for entry in current] == [_notification(wanted)]:
        return url
    s3.put_bucket_notification_configuration(
        Bucket=topology.uploads_bucket, NotificationConfiguration={"QueueConfigurations": [wanted]}
    )
    report(f"bucket {topology.uploads_bucket}: objects created under {prefix} notify queue {url.rsplit('/', 1)[-1]}")
    return url


def _notification(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return (
        entry.get("QueueArn"),
        sorted(entry.get("Events", [])),
        sorted((rule["Name"].lower(), rule["Value"]) for rule in rules),
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# -- tables ----------------------------------------------------------------------------------------------------

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]


def requests_table(name: str, dynamodb: Any) -> str:
    """The requests table under `name`, converged; its stream's ARN."""
    stream = _table(Table(name, stream_view_type="NEW_AND_OLD_IMAGES", ttl_attribute=TTL_ATTRIBUTE), dynamodb, _quiet)
    assert stream is not None
    return stream


def _table(table: Table, dynamodb: Any, report: Report) -> str | None:
    """The table with its stream and TTL; its stream's ARN (None without a stream)."""
    try:
        description = dynamodb.describe_table(TableName=table.name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        stream = (
            {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": table.stream_view_type}}
            if table.stream_view_type
            else {}
        )
        dynamodb.create_table(
            TableName=table.name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key["AttributeName"], "AttributeType": "S"} for key in KEYS],
            KeySchema=KEYS,
            **stream,
        )
        report(f"created table {table.name}")
        dynamodb.get_waiter("table_exists").wait(TableName=table.name)
        description = dynamodb.describe_table(TableName=table.name)["Table"]
    if sorted(map(_key, description["KeySchema"])) != sorted(map(_key, KEYS)):
        raise ProvisioningError(
            f"table {table.name} has other keys than pk and sk: it cannot be changed in place (make clean-state)"
        )
    _stream(table, description, dynamodb, report)
    _time_to_live(table, dynamodb, report)
    stream_arn: str | None = dynamodb.describe_table(TableName=table.name)["Table"].get("LatestStreamArn")
    return stream_arn if table.stream_view_type else None


def _key(key: Mapping[str, str]) -> tuple[str, str]:
    return key["AttributeName"], key["KeyType"]


def _stream(table: Table, description: Mapping[str, Any], dynamodb: Any, report: Report) -> None:
    specification = description.get("StreamSpecification") or {}
    current = specification.get("StreamViewType") if specification.get("StreamEnabled") else None
    if current == table.stream_view_type:
        return
    if current is not None:  # a stream's view cannot be changed: it is turned off, then on with the new view
        dynamodb.update_table(TableName=table.name, StreamSpecification={"StreamEnabled": False})
    if table.stream_view_type is not None:
        dynamodb.update_table(
            TableName=table.name,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": table.stream_view_type},
        )
    report(f"table {table.name}: stream {current or 'off'} -> {table.stream_view_type or 'off'}")


def _time_to_live(table: Table, dynamodb: Any, report: Report) -> None:
    described = dynamodb.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
    enabled = described.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    current = described.get("AttributeName") if enabled else None
    if current == table.ttl_attribute:
        return
    if current is not None:  # one TTL attribute per table: the old one is turned off first
        dynamodb.update_time_to_live(
            TableName=table.name, TimeToLiveSpecification={"Enabled": False, "AttributeName": current}
        )
    if table.ttl_attribute is not None:
        dynamodb.update_time_to_live(
            TableName=table.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute}
        )
    report(f"table {table.name}: TTL attribute {current or 'off'} -> {table.ttl_attribute or 'off'}")
