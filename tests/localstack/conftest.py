"""The LocalStack tier: the ingestion path against LocalStack (S3, SQS) and DynamoDB Local (the table and its
stream), real servers on 127.0.0.1, the handlers driven in-process by the local cloud's own event runners.

The functions' wiring builds plain `boto3.client(...)`s, so boto3's service-specific endpoint variables route them:
AWS_ENDPOINT_URL_S3 and _SQS to LocalStack, AWS_ENDPOINT_URL_DYNAMODB and _DYNAMODB_STREAMS to DynamoDB Local.

Run with `make test-localstack` (it installs the servers first); not part of plain `pytest`. LOCALSTACK_ENDPOINT
(e.g. http://127.0.0.1:4566, a LocalStack in Docker) and DYNAMODB_ENDPOINT use servers already running instead of
starting them. Every test makes its own buckets, queues and table (unique names) and deletes them afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.topology import TOPOLOGY, Topology
from localcloud.lambda_host import LocalFunction
from localcloud.peers import WebhookReceiver
from localcloud.provision import Resources, provision
from tests.integration.conftest import TENANT_SECRET, WEBHOOK_SECRET, Pipeline
from tests.localstack.servers import DynamoDBLocal, LocalStack, wait_for_localstack

# Where a client that was not routed to LocalStack or DynamoDB Local would go: a closed loopback port, so such a
# call fails at once instead of reaching AWS.
UNROUTED = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Endpoints:
    localstack: str  # S3 and SQS
    dynamodb: str  # DynamoDB and DynamoDB Streams


@pytest.fixture(scope="session")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """LocalStack and DynamoDB Local: started here (both at once) unless their endpoint variables name running ones."""
    localstack_url = os.environ.get("LOCALSTACK_ENDPOINT", "").rstrip("/")
    dynamodb_url = os.environ.get("DYNAMODB_ENDPOINT", "").rstrip("/")
    servers: list[LocalStack | DynamoDBLocal] = []
    try:
        if not localstack_url:
            servers.append(LocalStack(tmp_path_factory.mktemp("localstack")))
        if not dynamodb_url:
            servers.append(DynamoDBLocal(tmp_path_factory.mktemp("dynamodb-local")))
        for server in servers:
            server.spawn()
        for server in servers:
            server.wait()
            if isinstance(server, LocalStack):
                localstack_url = server.url
            else:
                dynamodb_url = server.url
        if not any(isinstance(server, LocalStack) for server in servers):
            wait_for_localstack(localstack_url, None, timeout=30)  # the user's: S3 and SQS must be up
        yield Endpoints(localstack_url, dynamodb_url)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session", autouse=True)
def routed(endpoints: Endpoints) -> Iterator[Endpoints]:
    """Route every boto3 client of this process (tests and functions alike) by service."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", UNROUTED)
        patch.setenv("AWS_ENDPOINT_URL_S3", endpoints.localstack)
        patch.setenv("AWS_ENDPOINT_URL_SQS", endpoints.localstack)
        patch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoints.dynamodb)
        patch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", endpoints.dynamodb)
        yield endpoints


def isolated(topology: Topology = TOPOLOGY, **queue: Any) -> Topology:
    """The topology under names of its own (a LocalStack that outlives the run keeps nothing in the way), with
    the images and chunks queues changed by `queue` (e.g. visibility_timeout_s=1)."""
    run = uuid.uuid4().hex[:10]
    return dataclasses.replace(
        topology,
        uploads_bucket=f"ips-uploads-{run}",
        processed_bucket=f"ips-processed-{run}",
        requests_table=f"ips-requests-{run}",
        images_queue=dataclasses.replace(
            topology.images_queue, name=f"ips-images-{run}", dead_letter_name=f"ips-images-{run}-dlq", **queue
        ),
        chunks_queue=dataclasses.replace(
            topology.chunks_queue, name=f"ips-chunks-{run}", dead_letter_name=f"ips-chunks-{run}-dlq", **queue
        ),
        webhooks_queue=dataclasses.replace(
            topology.webhooks_queue, name=f"ips-webhooks-{run}", dead_letter_name=f"ips-webhooks-{run}-dlq"
        ),
        upload_notification=dataclasses.replace(topology.upload_notification, failures_queue=f"ips-ingest-{run}"),
    )


def delete_resources(resources: Resources) -> None:
    """Remove what `provision` made (best effort: a test that failed half-way may have left less)."""
    s3, sqs, dynamodb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
    for bucket in (resources.uploads_bucket, resources.processed_bucket):
        with contextlib.suppress(ClientError):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            s3.delete_bucket(Bucket=bucket)
    for url in (
        resources.queue_url,
        resources.dead_letter_url,
        resources.chunks_queue_url,
        resources.chunks_dead_letter_url,
        resources.webhooks_queue_url,
        resources.webhooks_dead_letter_url,
        resources.ingest_failures_url,
        resources.upload_events_url,
    ):
        with contextlib.suppress(ClientError):
            sqs.delete_queue(QueueUrl=url)
    with contextlib.suppress(ClientError):
        dynamodb.delete_table(TableName=resources.table)


@dataclass
class Stack:
    """One test's provisioned topology and its functions (the integration tier's Pipeline drives them)."""

    topology: Topology
    resources: Resources
    pipeline: Pipeline


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(TENANT_SECRET) as receiver:
        yield receiver


@pytest.fixture
def make_stack(
    mongo_uri: str, image_server: Any, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Topology], Stack]]:
    """Provision a topology on LocalStack and DynamoDB Local and set the functions' environment as the local cloud
    and the CDK stack do."""
    from ips_runtime.roots import reset_roots

    made: list[Resources] = []

    def make(topology: Topology) -> Stack:
        resources = provision(topology, boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb"))
        made.append(resources)
        environment = {
            **topology.function_environment(),
            **resources.environment(),
            "MONGODB_URI": mongo_uri,
            "MONGODB_DATABASE": f"ips_{uuid.uuid4().hex[:12]}",
            "ASSET_BASE_URL": "http://assets.invalid/assets",
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "OUTBOUND_ALLOWLIST": f"{image_server.origin},{receiver.origin}",
            "WEBHOOK_FIRST_DELAY": "0.05",
        }
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        reset_roots()
        functions = {spec.name: LocalFunction(spec) for spec in topology.functions}
        return Stack(topology, resources, Pipeline(resources, functions))

    yield make
    reset_roots()
    for resources in made:
        delete_resources(resources)


@pytest.fixture
def stack(make_stack: Callable[[Topology], Stack]) -> Stack:
    return make_stack(isolated())
