"""Inject a fault, let the pipeline recover the way it would in AWS (queue redelivery, stream retries), then
check nothing was lost or counted twice: every image in exactly one terminal state, the counters equal to the
facts in MongoDB and S3, the request in a terminal status, the webhook delivered once, the DLQs as expected.

Faults are injected at the ports: a wrapper around the real adapter (moto, SecantusDB) fails the first calls."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import boto3
import pytest
from botocore.exceptions import ClientError
from pymongo.errors import ServerSelectionTimeoutError

from ips.completion.tenant_secrets import derive_secret
from ips.shared.model import ImageTask
from ips_runtime.roots import overriding_roots, reset_roots
from localcloud.gateway import api_key_id
from localcloud.peers import LoopbackServer, Quiet, WebhookReceiver
from tests.integration.conftest import TENANT_SECRET, WEBHOOK_SECRET, Pipeline
from tests.integration.resilience.conftest import MAX_RECEIVES, assert_consistent, settle, upload, with_fault
from tests.integration.test_api_handlers import HEADER, multipart

OTHER_KEY = "another-tenants-key"


def mixed_csv(images: str) -> str:
    return HEADER + (
        f'1,Mug,"{images}/sk_rocket.jpg,{images}/missing.jpg"\n2,Lamp,"{images}/sk_coffee.png,{images}/sk_chelsea.png"\n'
    )


@pytest.mark.parametrize(
    ("backend", "method", "error"),
    [
        ("processed", "put", ClientError({"Error": {"Code": "ServiceUnavailable"}}, "PutObject")),
        ("catalog", "record_images", ServerSelectionTimeoutError("MongoDB unreachable")),
        (
            "ledger",
            "count_many",
            ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Transact"),
        ),
        ("fetcher", "fetch", TimeoutError("the function timed out mid-image")),
    ],
    ids=["s3-put-fails", "mongodb-unreachable", "dynamodb-throttles", "timeout-mid-image"],
)
def test_a_failing_part_recovers_without_loss_or_double_counting(
    pipeline: Pipeline, image_server, receiver, backend: str, method: str, error: BaseException
) -> None:
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    adapters, faulty = with_fault(backend, method, error, times=2)
    with overriding_roots(adapters):
        status = settle(pipeline, request_id)
    assert faulty.remaining <= 0, "the fault was never hit"
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0


@pytest.mark.parametrize(
    ("backend", "method"),
    [("processed", "put"), ("catalog", "record_images"), ("ledger", "count_many")],
    ids=["after-the-s3-put", "after-the-mongodb-write", "after-the-dynamodb-count"],
)
def test_a_crash_right_after_a_step_loses_no_count_and_counts_none_twice(
    pipeline: Pipeline, image_server, receiver, backend: str, method: str
) -> None:
    """The step went through, then the worker died before the next one (and before answering): every record of
    the batch comes back, and its redelivery does only what is left (the catalog keeps the first terminal state,
    the ledger's markers count each image once)."""
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    adapters, faulty = with_fault(backend, method, RuntimeError("worker crashed"), times=2, after=True)
    with overriding_roots(adapters):
        status = settle(pipeline, request_id)
    assert faulty.remaining <= 0, "the crash never happened"
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0


def test_notify_crashing_after_the_csv_before_the_webhook_still_sends_it_once(
    pipeline: Pipeline, image_server, receiver
) -> None:
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    # Finalised, then dead before the webhook's wake-up was queued: the stream's retry queues it.
    adapters, faulty = with_fault("webhook_queue", "send", RuntimeError("notify crashed"), times=1)
    with overriding_roots(adapters):
        status = settle(pipeline, request_id)
        time.sleep(0.5)  # the stream runner's retry of the failed batch
        pipeline.notify()
    assert faulty.remaining <= 0
    assert status["outputCsvUrl"]
    deliveries = receiver.wait(1, timeout=10)
    assert [d["id"] for d in deliveries] == [f"msg_{request_id}"]
    assert_consistent(pipeline, request_id, status)


def test_a_webhook_that_always_fails_is_given_up_after_its_budget_and_says_so(
    pipeline: Pipeline, image_server, monkeypatch, function_env
) -> None:
    with WebhookReceiver(TENANT_SECRET, fail_first=1000) as broken:
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{broken.origin}")
        monkeypatch.setenv("WEBHOOK_ATTEMPTS", "3")
        reset_roots()
        request_id = upload(pipeline, mixed_csv(image_server.url), broken.url)
        status = settle(pipeline, request_id)
        assert status["status"] == "COMPLETED_WITH_ERRORS"
        assert_consistent(pipeline, request_id, status)
        pipeline.webhooks_until(lambda: status_of(pipeline, request_id)["webhook"]["gaveUp"])
        for _ in range(3):  # later rounds and wake-ups send nothing more
            pipeline.reconcile()
            pipeline.send_webhooks()
        assert broken.attempts == 3
    assert status_of(pipeline, request_id)["webhook"] == {
        "delivered": False,
        "attempts": 3,
        "lastStatus": 500,
        "lastError": "HTTP 500",
        "nextAttemptAt": None,
        "gaveUp": True,
    }
    assert pipeline.queued(pipeline.resources.webhooks_queue_url) == 0


def status_of(pipeline: Pipeline, request_id: str, **key: str) -> dict:
    return pipeline.api("GET", f"/api/v1/status/{request_id}", **key)[1]


def test_a_receiver_that_never_answers_holds_no_completion_and_no_other_tenants_webhook(
    pipeline: Pipeline, image_server, receiver, monkeypatch, function_env
) -> None:
    """One tenant's receiver accepts the connection and never answers. Before, notify delivered inline: each
    completion on the stream waited for it, 5 attempts of the whole timeout plus backoff, and other tenants'
    completions in the same stream batch waited behind it. Now notify only queues the wake-up; the webhook
    function's attempt costs one short timeout, is retried through the queue and capped; the other tenant's
    webhook goes out meanwhile."""
    with WebhookReceiver(TENANT_SECRET, silent=True) as silent:
        allowed = f"{function_env['OUTBOUND_ALLOWLIST']},{receiver.origin},{silent.origin}"
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", allowed)
        monkeypatch.setenv("OUTBOUND_TOTAL_TIMEOUT", "1")  # the old inline delivery's limit, per attempt
        monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "1")
        monkeypatch.setenv("WEBHOOK_ATTEMPTS", "2")
        monkeypatch.setenv("WEBHOOK_FIRST_DELAY", "5")  # the retry comes after the checks below
        reset_roots()
        other_secret = derive_secret(WEBHOOK_SECRET, api_key_id(OTHER_KEY), 0)
        receiver.use_secret(other_secret)
        stuck = upload(pipeline, mixed_csv(image_server.url), silent.url)
        body, headers = multipart(mixed_csv(image_server.url), receiver.url)
        code, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers, api_key=OTHER_KEY)
        assert code == 202
        other = answer["requestId"]
        pipeline.drain_queue()
        assert pipeline.notify()  # both completions in one stream batch
        assert (
            status_of(pipeline, stuck)["status"]
            == status_of(pipeline, other, api_key=OTHER_KEY)["status"]
            == "COMPLETED_WITH_ERRORS"
        )
        [delivery] = receiver.wait(1, timeout=10)  # the other tenant's webhook, delivered
        assert delivery["payload"]["data"]["requestId"] == other
        webhook = status_of(pipeline, stuck)["webhook"]
        assert (webhook["delivered"], webhook["attempts"], silent.attempts) == (False, 1, 1)
        assert webhook["lastError"].startswith("TIMEOUT") and webhook["nextAttemptAt"]
        pipeline.webhooks_until(lambda: status_of(pipeline, stuck)["webhook"]["gaveUp"])
        for _ in range(3):
            pipeline.reconcile()
            pipeline.send_webhooks()
        assert silent.attempts == 2  # capped: never again, whatever the rounds


class _Unavailable(Quiet, BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("content-length", "0")
        self.end_headers()


def test_an_image_that_fails_transiently_every_time_fails_with_its_reason_on_the_last_delivery(
    pipeline: Pipeline, image_server, receiver, monkeypatch, function_env
) -> None:
    with LoopbackServer(_Unavailable) as unavailable:
        origin = unavailable.origin
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{receiver.origin},{origin}")
        reset_roots()
        request_id = upload(
            pipeline, HEADER + f'1,Mug,"{image_server.url}/sk_rocket.jpg,http://{origin}/x.jpg"\n', receiver.url
        )
        status = settle(pipeline, request_id)
    [error] = status["products"][0]["errors"]
    assert error["code"] == "HTTP_STATUS" and f"gave up after {MAX_RECEIVES} attempts" in error["message"]
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 1, 1)
    assert_consistent(pipeline, request_id, status)
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0


def test_a_batch_mixing_malformed_and_unknown_messages_with_valid_ones_processes_every_valid_one(
    pipeline: Pipeline, image_server, receiver
) -> None:
    """Each record on its own: the poison is logged and removed at once, the valid images of the same batch are
    processed and counted (before, the batch raised JSONDecodeError and every record went back to the queue)."""
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    sqs, queue_url = boto3.client("sqs"), pipeline.resources.queue_url
    pipeline.chunk_runner().poll_once()  # the chunk: its 4 image messages are now queued
    poison = [
        "{not json",
        "[]",
        '{"requestId": "r", "row": "two", "index": 0, "url": "http://x", "salt": "s"}',
        ImageTask("no-such-request", 2, 0, f"{image_server.url}/sk_rocket.jpg", "salt").to_message(),
    ]
    for body in poison:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    messages: list[dict] = []
    while len(messages) < 8:
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
        messages += received.get("Messages", [])
    runner = pipeline.sqs_runner()
    runner.deliver(messages)  # one batch: 4 valid images, 4 poison messages
    assert pipeline.queued() == 0, "every record of the batch was settled: processed, or removed"
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0
    assert len(receiver.wait(1, timeout=10)) == 1


def test_mongodb_down_at_upload_time_answers_500_and_queues_nothing(
    pipeline: Pipeline, image_server, monkeypatch
) -> None:
    from localcloud.servers import free_port

    monkeypatch.setenv("MONGODB_URI", f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300")
    reset_roots()
    body, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_rocket.jpg\n")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert (status, answer["code"]) == (500, "INTERNAL_ERROR")
    assert pipeline.queued() == 0


def test_a_chunk_that_fails_for_good_is_put_back_then_ends_its_request_failed(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    monkeypatch.setenv("DEAD_LETTER_REDRIVES", "1")
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    resources = pipeline.resources
    # The stored CSV is gone before the chunk is expanded: every delivery of the chunk fails.
    boto3.client("s3").delete_object(Bucket=resources.uploads_bucket, Key=f"{request_id}/input.csv")

    def to_the_dead_letters() -> None:
        runner, deadline = pipeline.chunk_runner(), time.monotonic() + 20
        while pipeline.queued(resources.chunks_dead_letter_url) == 0 and time.monotonic() < deadline:
            if not runner.poll_once():
                time.sleep(0.3)
        assert pipeline.queued(resources.chunks_dead_letter_url) == 1

    to_the_dead_letters()
    # Its last delivery no longer ends the request (a store outage would end it too): the DLQ keeps it.
    assert status_of(pipeline, request_id)["status"] == "PENDING"
    assert pipeline.reconcile()["redriven"] == 1  # before its deadline: put back once
    to_the_dead_letters()
    assert pipeline.reconcile()["dead_chunks"] == 1  # put back enough: the request ends
    status = status_of(pipeline, request_id)
    assert (status["status"], status["error"]["code"]) == ("FAILED", "DEAD_LETTERED")
    assert "Rows 2+" in status["error"]["message"]
    assert pipeline.queued(resources.chunks_dead_letter_url) == 0
    # The reconciler sends no webhook itself: the counter's OPEN -> FAILED flip brings it to notify.
    assert receiver.deliveries == []
    assert pipeline.notify()
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["status"] == "FAILED"
    pipeline.notify()
    time.sleep(0.3)
    assert len(receiver.deliveries) == 1
