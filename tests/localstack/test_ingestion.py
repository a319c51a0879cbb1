"""The ingestion path against LocalStack and DynamoDB Local: what moto cannot show (S3 enforcing the presigned
POST's policy, S3's own notification to SQS, SQS's own redrive) and the whole presigned path to COMPLETED."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

import boto3
import pytest

from ips_runtime.adapters import Adapters
from ips_runtime.roots import reset_roots
from tests.integration.test_api_handlers import HEADER, multipart
from tests.integration.test_presigned_upload import post_to_s3, start_upload
from tests.localstack.conftest import Endpoints, Stack, isolated

MAX_RECEIVES = 3
IMAGES = ("sk_rocket.jpg", "sk_coffee.png", "sk_chelsea.png", "sk_retina.jpg")


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30, step: Callable[[], bool] | None = None):
    """Poll (running `step` each round, e.g. a runner's poll_once) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worked = step() if step else False
        result = condition()
        if result:
            return result
        if not worked:
            time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def keys(bucket: str, prefix: str = "") -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_the_functions_reach_s3_and_sqs_on_localstack_and_dynamodb_on_dynamodb_local(
    stack: Stack, routed: Endpoints
) -> None:
    backends = Adapters.from_env()
    assert backends.uploads._client.meta.endpoint_url == routed.localstack
    assert backends.processed._client.meta.endpoint_url == routed.localstack
    assert backends.queue._client.meta.endpoint_url == routed.localstack
    assert backends.ledger._client.meta.endpoint_url == routed.dynamodb
    assert boto3.client("dynamodbstreams").meta.endpoint_url == routed.dynamodb
    # Each server holds only its own services' resources.
    assert stack.resources.table in boto3.client("dynamodb").list_tables()["TableNames"]
    assert stack.resources.uploads_bucket in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert stack.resources.queue_url.startswith(routed.localstack)


def test_a_presigned_post_over_the_size_range_is_refused_by_s3_itself(
    stack: Stack, routed: Endpoints, monkeypatch: pytest.MonkeyPatch, image_server
) -> None:
    monkeypatch.setenv("PRESIGNED_CSV_MAX_BYTES", "200")
    reset_roots()
    pipeline = stack.pipeline
    slot = start_upload(pipeline)
    assert slot["maxBytes"] == 200 and slot["upload"]["url"].startswith(routed.localstack)
    too_big = (HEADER + "".join(f"{n},P{n},{image_server.url}/sk_rocket.jpg\n" for n in range(1, 20))).encode()
    assert len(too_big) > 200

    refused = post_to_s3(slot, too_big)

    assert refused.status_code == 400
    error = ET.fromstring(refused.content)
    assert error.findtext("Code") == "EntityTooLarge"
    assert (error.findtext("MaxSizeAllowed"), error.findtext("ProposedSize")) == ("200", str(len(too_big)))
    assert keys(stack.resources.uploads_bucket) == []
    # No object, so no ObjectCreated event: ingestion never runs and the request still waits for its file.
    ingest, s3_runner = pipeline.functions["ingest"], pipeline.s3_runner()
    for _ in range(2):
        s3_runner.poll_once()
    assert ingest.invocations == 0
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["detail"]) == ("PENDING", "WAITING_FOR_UPLOAD")

    # The same POST with a file inside the range goes through (the size alone was refused), and its event is the
    # only one that ever reaches ingestion.
    small = (HEADER + f"1,P1,{image_server.url}/sk_rocket.jpg\n").encode()
    assert post_to_s3(slot, small).status_code == 204
    assert keys(stack.resources.uploads_bucket) == [f"incoming/{slot['requestId']}.csv"]
    wait_until(lambda: ingest.invocations, "the S3 notification", step=s3_runner.poll_once)
    s3_runner.poll_once()
    assert ingest.invocations == 1
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["detail"], status["totalProducts"]) == ("PENDING", None, 1)


def test_a_presigned_upload_is_notified_ingested_fanned_out_processed_and_completed(
    stack: Stack, image_server, receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHUNK_IMAGES", "4")
    reset_roots()
    pipeline, resources = stack.pipeline, stack.resources
    rows = "".join(f"{n},Product {n},{image_server.url}/{IMAGES[n % len(IMAGES)]}\n" for n in range(1, 11))
    slot = start_upload(pipeline, receiver.url)
    request_id = slot["requestId"]
    assert post_to_s3(slot, (HEADER + rows).encode()).status_code == 204

    # S3 -> the events queue -> S3NotificationRunner -> ingest (the event as LocalStack's S3 wrote it).
    wait_until(
        lambda: pipeline.functions["ingest"].invocations, "the S3 notification", step=pipeline.s3_runner().poll_once
    )
    _, status = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert (status["status"], status["detail"], status["totalProducts"], status["total"]) == ("PENDING", None, 10, 10)
    assert pipeline.queued(resources.chunks_queue_url) == 3  # 10 images in chunks of 4

    # SqsRunner -> expand: the chunks become image messages; SqsRunner -> process: every image fetched and stored.
    pipeline.drain_queue()
    counts = Adapters.from_env().ledger.counts(request_id)
    assert counts is not None and (counts.total, counts.succeeded, counts.failed) == (10, 10, 0)

    # StreamRunner on DynamoDB Local's stream -> notify: the output CSV, the final status, the webhook's wake-up;
    # SqsRunner -> webhook: the signed POST.
    stream = pipeline.stream_runner()
    status = wait_until(
        lambda: (answer := pipeline.api("GET", f"/api/v1/status/{request_id}")[1])["status"] == "COMPLETED" and answer,
        "the request to complete",
        step=stream.poll_once,
    )
    assert (status["succeeded"], status["failed"]) == (10, 0)
    assert [product["serialNumber"] for product in status["products"]] == [str(n) for n in range(1, 11)]
    stored = keys(resources.processed_bucket, f"{request_id}/")  # images only, each key with its own tag
    assert [re.sub(r"-[^/]*$", "", key) for key in stored] == sorted(f"{request_id}/{row}/0" for row in range(2, 12))
    s3 = boto3.client("s3")
    jpeg = s3.get_object(Bucket=resources.processed_bucket, Key=stored[0])["Body"].read()
    assert jpeg[:3] == b"\xff\xd8\xff"
    # The output CSV is in the private uploads bucket, beside the ingested (pinned) copy of the upload.
    output = s3.get_object(Bucket=resources.uploads_bucket, Key=f"{request_id}/output.csv")["Body"].read().decode()
    assert output.splitlines()[0].endswith("Output Image Urls") and len(output.splitlines()) == 11
    pipeline.send_webhooks()
    [delivery] = receiver.wait(1, timeout=15)
    assert delivery["payload"]["data"]["status"] == "COMPLETED"
    assert pipeline.queued() == 0 and pipeline.queued(resources.dead_letter_url) == 0
    assert stream.failed_batches == []


def test_a_malformed_message_is_removed_at_its_first_delivery(make_stack) -> None:
    # Retrying cannot mend it: the process function drops it (logged, counted) and SQS never redrives it.
    stack = make_stack(isolated(visibility_timeout_s=1, max_receive_count=MAX_RECEIVES))
    pipeline, resources = stack.pipeline, stack.resources
    boto3.client("sqs").send_message(QueueUrl=resources.queue_url, MessageBody="{not json")
    runner = pipeline.sqs_runner()
    wait_until(lambda: pipeline.functions["process"].invocations, "the delivery", step=runner.poll_once)
    runner.poll_once()  # a retry would be visible again after the 1 s visibility timeout
    time.sleep(1.5)
    runner.poll_once()
    assert pipeline.functions["process"].invocations == 1
    assert pipeline.queued() == 0 and pipeline.queued(resources.dead_letter_url) == 0
    assert keys(resources.processed_bucket) == []
    assert boto3.client("dynamodb").scan(TableName=resources.table)["Count"] == 0


def test_a_chunk_that_keeps_failing_is_redriven_to_the_dlq_by_sqs(make_stack, image_server) -> None:
    # Retries come back after a second; SQS moves the message after MAX_RECEIVES receives.
    stack = make_stack(isolated(visibility_timeout_s=1, max_receive_count=MAX_RECEIVES))
    pipeline, resources = stack.pipeline, stack.resources
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=resources.chunks_queue_url, AttributeNames=["All"])
    policy = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == MAX_RECEIVES and policy["deadLetterTargetArn"].endswith("-dlq")
    # A real upload whose CSV is gone before its chunk is expanded.
    upload, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_rocket.jpg\n")
    code, accepted = pipeline.api("POST", "/api/v1/upload", body=upload, headers=headers)
    assert code == 202, accepted
    request_id = accepted["requestId"]
    boto3.client("s3").delete_object(Bucket=resources.uploads_bucket, Key=f"{request_id}/input.csv")

    runner = pipeline.chunk_runner()
    wait_until(lambda: pipeline.queued(resources.chunks_dead_letter_url) == 1, "the DLQ", step=runner.poll_once)

    assert pipeline.functions["expand"].invocations == MAX_RECEIVES
    assert pipeline.queued(resources.chunks_queue_url) == 0 and pipeline.queued() == 0
    # Looked at, and left visible for the reconciler.
    [dead] = boto3.client("sqs").receive_message(QueueUrl=resources.chunks_dead_letter_url, VisibilityTimeout=0)[
        "Messages"
    ]
    chunk = json.loads(dead["Body"])
    assert (chunk["type"], chunk["requestId"], chunk["key"]) == ("chunk", request_id, f"{request_id}/input.csv")
    # Nothing counted, nothing stored.
    assert keys(resources.processed_bucket) == []
    counts = Adapters.from_env().ledger.counts(request_id)
    assert counts is not None and (counts.total, counts.succeeded, counts.failed) == (1, 0, 0)
    assert list(Adapters.from_env().catalog.products(request_id)) == []
    # ... and its last delivery did not end the request (a store outage looks the same): the reconciler puts the
    # dead chunk back while the request has time, and ends it by its deadline or after DEAD_LETTER_REDRIVES.
    _, status = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert status["status"] == "PENDING" and status.get("error") is None
    report = pipeline.reconcile()
    assert (report["redriven"], report["dead_chunks"]) == (1, 0), report
    assert pipeline.queued(resources.chunks_dead_letter_url) == 0 and pipeline.queued(resources.chunks_queue_url) == 1
