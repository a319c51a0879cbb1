"""The reconciler makes every request end, whatever was lost: dead letters, lost queue messages, lost
completions, passed deadlines, crashed or failed webhook senders; and an outage only pauses the work: dead letters
go back to their queue while their request has time, and deadlines move by a store outage. Each test loses
something the pipeline alone never recovers (it stays PROCESSING, or its webhook is never sent), then runs a
round as the schedule would. The rules themselves are tested over the fakes (tests/unit/usecases/test_reconcile.py
and tests/unit/test_reconcile_*.py); these keep what only the real servers show: the queues' redrive and depth,
DynamoDB's counters, chunk progress and stream, MongoDB's conditional updates and claims."""

from __future__ import annotations

import time
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from ips.completion.service import complete_request
from ips.expansion.service import SEND_GROUP
from ips.reconcile.service import dead_letter_reason
from ips.shared.failing import FailPorts
from ips.shared.messages import redrive_count
from ips.shared.model import RequestStatus, WebhookTask
from ips.shared.ports import utc_now
from ips_runtime import roots
from ips_runtime.adapters import Adapters
from ips_runtime.roots import overriding_roots, reset_roots
from localcloud.peers import WebhookReceiver
from tests.integration.conftest import TENANT_SECRET, Pipeline
from tests.integration.resilience.conftest import assert_consistent, settle, upload, with_fault
from tests.integration.resilience.test_chunks import KilledAfter, queued_images, rows_csv
from tests.integration.resilience.test_faults import mixed_csv


def purge(pipeline: Pipeline) -> None:
    """Work lost from the queues: a restarted local cloud, messages past retention, a broken redrive."""
    sqs = boto3.client("sqs")
    for url in (pipeline.resources.chunks_queue_url, pipeline.resources.queue_url):
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def status_of(pipeline: Pipeline, request_id: str) -> dict:
    return pipeline.api("GET", f"/api/v1/status/{request_id}")[1]


def run_to_dead_letters(pipeline: Pipeline, stalled_after: float = 30) -> None:
    """Deliver until every message has gone to the DLQ; given up only when nothing was delivered for
    `stalled_after` seconds (a budget for the whole would fail on a loaded machine while deliveries go on)."""
    runner = pipeline.sqs_runner()
    deadline = time.monotonic() + stalled_after
    while pipeline.queued() and time.monotonic() < deadline:
        if runner.poll_once():
            deadline = time.monotonic() + stalled_after
        else:
            time.sleep(0.3)
    assert pipeline.queued() == 0


def test_images_dead_lettered_while_mongodb_was_down_go_back_to_their_queue_and_succeed_once_it_is_back(
    pipeline: Pipeline, image_server, receiver
) -> None:
    """An outage longer than the queue's retries: every delivery failed, so the images went to the DLQ. Their
    request is still before its deadline, so the reconciler puts them back (before: each failed DEAD_LETTERED,
    the work thrown away although it could be done once MongoDB was back)."""
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    pipeline.chunk_runner().poll_once()  # the chunk
    adapters, _ = with_fault("catalog", "record_images", ServerSelectionTimeoutError("MongoDB down"), times=10_000)
    with overriding_roots(adapters):
        run_to_dead_letters(pipeline)
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 4
    assert status_of(pipeline, request_id)["status"] == "PENDING"  # stuck, before the reconciler

    report = pipeline.reconcile()
    assert (report["redriven"], report["dead_images"]) == (4, 0)
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0
    assert {redrive_count(body) for body in queued_bodies(pipeline)} == {1}
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert {e["code"] for p in status["products"] for e in p["errors"]} == {"HTTP_STATUS"}  # only the 404
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1


def test_an_image_that_keeps_dying_is_put_back_up_to_the_cap_then_fails_quoting_its_last_error(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    monkeypatch.setenv("DEAD_LETTER_REDRIVES", "1")
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    pipeline.chunk_runner().poll_once()
    adapters, _ = with_fault("catalog", "record_images", ServerSelectionTimeoutError("MongoDB down"), times=10_000)
    with overriding_roots(adapters):
        run_to_dead_letters(pipeline)
        assert pipeline.reconcile()["redriven"] == 4  # the first time: put back
        run_to_dead_letters(pipeline)  # and dead again
    report = pipeline.reconcile()
    assert (report["redriven"], report["dead_images"]) == (0, 4)
    status = settle(pipeline, request_id)
    assert (status["status"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 4)
    messages = {e["message"] for p in status["products"] for e in p["errors"]}
    # The last error each delivery noted (MongoDB refused the image's record), quoted by its failure.
    assert messages == {dead_letter_reason("ServerSelectionTimeoutError")}
    assert "dead-lettered. Last error: ServerSelectionTimeoutError" in messages.pop()
    assert_consistent(pipeline, request_id, status, orphans_allowed=True)
    assert len(receiver.wait(1, timeout=10)) == 1
    assert pipeline.reconcile()["dead_images"] == 0


def queued_bodies(pipeline: Pipeline) -> list[str]:
    """The images queue's messages (taken, then made visible again at once)."""
    sqs, url = boto3.client("sqs"), pipeline.resources.queue_url
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return [message["Body"] for message in messages]


def kill_every_delivery(pipeline: Pipeline) -> None:
    """What a function timeout, an out-of-memory kill or a failed cold start on every delivery leaves: the
    image messages in the DLQ, and nothing noted about why."""
    sqs, queue = boto3.client("sqs"), pipeline.resources.queue_url
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            sqs.send_message(QueueUrl=pipeline.resources.dead_letter_url, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


S3_REFUSES = ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "S3 is down"}}, "PutObject")
DYNAMODB_THROTTLES = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "TransactWriteItems")


@pytest.mark.parametrize(
    ("fault", "in_dlq", "dead", "last_error"),
    [
        (("processed", "put", S3_REFUSES), 3, 3, "ClientError (ServiceUnavailable)"),  # the 404 fails on its own
        (("catalog", "record_images", ServerSelectionTimeoutError("down")), 4, 4, "ServerSelectionTimeoutError"),
        # Recorded on every delivery, never counted: the recorded outcomes are counted, none DEAD_LETTERED.
        (("ledger", "count_many", DYNAMODB_THROTTLES), 4, 0, None),
        (None, 4, 4, None),  # killed: nothing noted, the reason says only that it was dead-lettered
    ],
    ids=["s3-put-refused", "mongodb-down", "dynamodb-throttled", "killed-every-time"],
)
def test_every_last_delivery_failure_ends_through_the_dead_letter_queue(
    pipeline: Pipeline,
    image_server,
    receiver,
    monkeypatch,
    fault: tuple[str, str, Exception] | None,
    in_dlq: int,
    dead: int,
    last_error: str | None,
) -> None:
    """Whatever fails on an image's last delivery (the process function's own safety net covers fetch and
    compress only), once it has been put back as often as it may be (here: never), the reconciler ends the
    image from the DLQ, counted once, and the request completes."""
    monkeypatch.setenv("DEAD_LETTER_REDRIVES", "0")
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    pipeline.chunk_runner().poll_once()  # the chunk
    if fault is None:
        kill_every_delivery(pipeline)
    else:
        adapters, _ = with_fault(*fault, times=10_000)
        with overriding_roots(adapters):
            run_to_dead_letters(pipeline)
    assert pipeline.queued(pipeline.resources.dead_letter_url) == in_dlq
    assert status_of(pipeline, request_id)["status"] in ("PENDING", "PROCESSING")  # stuck, before the reconciler
    assert pipeline.reconcile()["dead_images"] == in_dlq
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == (
        "COMPLETED_WITH_ERRORS",
        0 if dead else 3,
        4 if dead else 1,
    )
    errors = [e for p in status["products"] for e in p["errors"]]
    dead_lettered = [e["message"] for e in errors if e["code"] == "DEAD_LETTERED"]
    assert dead_lettered == [dead_letter_reason(last_error)] * dead
    if last_error:
        assert dead_lettered[0].endswith(f"dead-lettered. Last error: {last_error}")
        assert "S3 is down" not in dead_lettered[0]  # a store's own words stay in the logs
    assert_consistent(pipeline, request_id, status, orphans_allowed=True)
    assert len(receiver.wait(1, timeout=10)) == 1


def kill_the_chunk(pipeline: Pipeline) -> None:
    """What a timeout or an out-of-memory kill on every delivery of the chunk leaves (no code of the expand
    function runs then): the chunk in the chunks queue's DLQ, the request still open, nothing else queued."""
    sqs, resources = boto3.client("sqs"), pipeline.resources
    [message] = sqs.receive_message(QueueUrl=resources.chunks_queue_url)["Messages"]
    sqs.send_message(QueueUrl=resources.chunks_dead_letter_url, MessageBody=message["Body"])
    sqs.delete_message(QueueUrl=resources.chunks_queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_a_dead_chunk_put_back_enough_ends_its_request_failed_with_a_reason_and_webhook(
    pipeline: Pipeline, image_server, receiver, monkeypatch
):
    """Also the path every request the reconciler ends FAILED takes: the counter's OPEN -> FAILED flip in
    DynamoDB, its stream record, the notify function and one failure webhook."""
    monkeypatch.setenv("DEAD_LETTER_REDRIVES", "0")
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    resources = pipeline.resources
    kill_the_chunk(pipeline)
    assert status_of(pipeline, request_id)["status"] == "PENDING"  # stuck, before the reconciler

    assert pipeline.reconcile()["dead_chunks"] == 1
    assert pipeline.queued(resources.chunks_dead_letter_url) == 0
    status = status_of(pipeline, request_id)
    assert (status["status"], status["error"]["code"]) == ("FAILED", "DEAD_LETTERED")
    assert "Rows 2+" in status["error"]["message"]
    assert pipeline.notify()  # the counter's OPEN -> FAILED flip brings it to notify
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["error"]["code"] == "DEAD_LETTERED"
    # A second round, and the stream again, change nothing and send nothing more.
    assert pipeline.reconcile()["dead_chunks"] == 0
    pipeline.notify()
    time.sleep(0.3)
    assert len(receiver.deliveries) == 1
    assert pipeline.queued(resources.chunks_queue_url) == 0


@pytest.mark.parametrize("lost", ["images", "chunk"])
def test_a_stalled_request_has_its_pending_work_requeued(
    pipeline: Pipeline, image_server, receiver, monkeypatch, lost: str
) -> None:
    monkeypatch.setenv("STALL_AFTER_SECONDS", "0")
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    if lost == "images":
        pipeline.chunk_runner().poll_once()  # the chunk is expanded, then its image messages are lost
    purge(pipeline)
    report = pipeline.reconcile()
    assert (report["stalled"], report["requeued"]) == (1, 4 if lost == "images" else 1)
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1


def test_a_request_waiting_behind_a_backlog_is_not_requeued(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    """No progress for the stall window, but the queue holds as many messages as its work needs (a backlog of
    other requests, its own retries): re-queueing it would double the backlog, so that more requests stall."""
    monkeypatch.setenv("STALL_AFTER_SECONDS", "0")
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    pipeline.chunk_runner().poll_once()  # the chunk: its 4 image messages wait in the queue
    report = pipeline.reconcile()
    assert (report["waiting"], report["stalled"], report["requeued"]) == (1, 0, 0)
    assert pipeline.queued() == 4
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)


def test_a_request_whose_chunk_waits_in_the_chunks_queue_is_not_requeued(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    """Its rows not expanded yet, nothing on the images queue: the chunks queue holds its work."""
    monkeypatch.setenv("STALL_AFTER_SECONDS", "0")
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    report = pipeline.reconcile()
    assert (report["waiting"], report["stalled"]) == (1, 0)  # before: the chunk was sent a second time
    assert pipeline.queued(pipeline.resources.chunks_queue_url) == 1
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)


def test_a_partly_expanded_request_is_requeued_by_what_each_queue_lost(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    """A chunk killed after its first group: 100 image messages sent (its progress in DynamoDB says so), 5 images
    left to the chunk's redelivery. The images its chunk has not sent are not the images queue's to hold; when the
    image messages are lost, only those 100 are re-queued, and the chunk's redelivery sends the other 5."""
    monkeypatch.setenv("STALL_AFTER_SECONDS", "0")
    reset_roots()
    request_id = upload(pipeline, rows_csv(image_server.url, rows=21, urls=5), receiver.url)  # 105 images, 1 chunk
    adapters = Adapters.from_env(lambda name, adapter: KilledAfter(adapter, kill_at=2) if name == "queue" else adapter)
    with overriding_roots(adapters):
        pipeline.chunk_runner().poll_once()  # the first group goes out, then the invocation dies
    assert adapters.chunk_progress.sent(request_id, 2) == SEND_GROUP
    report = pipeline.reconcile()
    assert (report["waiting"], report["stalled"]) == (1, 0)  # before: 100 messages < 105 pending, all re-queued
    assert pipeline.queued() == 100

    sqs, url = boto3.client("sqs"), pipeline.resources.queue_url
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:  # the image messages are lost; the chunk's message is not
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    report = pipeline.reconcile()
    assert (report["stalled"], report["requeued"]) == (1, SEND_GROUP)  # not the chunk: it is in its queue
    assert queued_images(pipeline) == {(row, index): 1 for row in range(2, 22) for index in range(5)}
    status = settle(pipeline, request_id, timeout=120)
    assert (status["status"], status["total"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 105, 105)
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1


def test_a_final_state_is_never_overwritten(pipeline: Pipeline, image_server, receiver) -> None:
    """A FAILED request whose images then all finish stays FAILED: its failure webhook already went out."""
    from ips.shared.failing import fail_request

    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    pipeline.chunk_runner().poll_once()
    adapters = Adapters.from_env()
    assert fail_request(
        request_id, "FAN_OUT_FAILED", "rows lost", FailPorts(adapters.catalog, adapters.ledger, utc_now)
    )
    pipeline.drain_queue()  # every image is processed and counted; the last count flips the counter
    pipeline.notify()
    complete_request(request_id, roots.NOTIFY())  # and a late completion changes nothing
    status = status_of(pipeline, request_id)
    assert (status["status"], status["error"]["code"], status["outputCsvUrl"]) == ("FAILED", "FAN_OUT_FAILED", None)
    deliveries = receiver.wait(1, timeout=10)
    time.sleep(0.3)
    assert (
        [d["payload"]["data"]["status"] for d in receiver.deliveries]
        == ["FAILED"]
        == [d["payload"]["data"]["status"] for d in deliveries]
    )


def test_a_live_claim_held_by_another_waits_for_it_and_an_expired_one_is_taken_over(
    pipeline: Pipeline, image_server, receiver, function_env
) -> None:
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    adapters = Adapters.from_env()
    pipeline.drain_queue()
    # Another webhook sender took the claim and then died mid-POST (no outcome recorded).
    clock = adapters.clock
    assert adapters.catalog.claim_webhook(request_id, 600, clock()) == 1
    pipeline.notify()  # the completion queues the wake-up; the webhook function finds the live claim
    assert receiver.deliveries == []
    assert pipeline.queued(pipeline.resources.webhooks_queue_url) == 1  # woken again when the claim ends
    assert pipeline.reconcile()["webhooks_woken"] == 0  # claimed: not the reconciler's either
    # The claim expires, and the wake-up comes back (its delay shortened here): delivered once.
    database = MongoClient(function_env["MONGODB_URI"])[function_env["MONGODB_DATABASE"]]
    database["requests"].update_one({"_id": request_id}, {"$set": {"webhookClaimUntil": clock() - timedelta(1)}})
    sqs, url = boto3.client("sqs"), pipeline.resources.webhooks_queue_url
    sqs.purge_queue(QueueUrl=url)  # the delayed wake-up, arriving now instead
    sqs.send_message(QueueUrl=url, MessageBody=WebhookTask(request_id).to_message())
    pipeline.send_webhooks()
    assert [d["id"] for d in receiver.wait(1, timeout=10)] == [f"msg_{request_id}"]
    status = status_of(pipeline, request_id)
    assert status["status"] == RequestStatus.COMPLETED_WITH_ERRORS.value
    assert (status["webhook"]["delivered"], status["webhook"]["attempts"]) == (True, 2)  # the dead one's counts


def test_a_webhook_receiver_that_fails_for_a_while_gets_exactly_one_delivery(
    pipeline: Pipeline, image_server, monkeypatch, function_env
) -> None:
    with WebhookReceiver(TENANT_SECRET, fail_first=2) as flaky:
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{flaky.origin}")
        monkeypatch.setenv("WEBHOOK_ATTEMPTS", "3")
        reset_roots()
        request_id = upload(pipeline, mixed_csv(image_server.url), flaky.url)
        status = settle(pipeline, request_id)
        assert status["webhook"]["delivered"] is False and flaky.deliveries == []
        assert status["webhook"]["nextAttemptAt"] and not status["webhook"]["gaveUp"]  # it says what comes next
        pipeline.webhooks_until(lambda: flaky.deliveries)
        assert [d["id"] for d in flaky.deliveries] == [f"msg_{request_id}"]
        assert pipeline.reconcile()["webhooks_woken"] == 0
        pipeline.send_webhooks()
        assert (len(flaky.deliveries), flaky.attempts) == (1, 3)


def test_deadlines_stop_while_a_store_is_down_and_its_pending_images_are_done_afterwards(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    """MongoDB is down past the request's deadline: the rounds then do nothing, and the first one after the
    outage moves the deadline by it (before: it failed every pending image DEADLINE_EXCEEDED)."""
    monkeypatch.setenv("REQUEST_DEADLINE_SECONDS", "2")
    monkeypatch.setenv("REQUEST_DEADLINE_PER_IMAGE_SECONDS", "0")
    monkeypatch.setenv("RECONCILE_INTERVAL_SECONDS", "0.5")  # so 2 s without a healthy round is an outage
    reset_roots()
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    pipeline.chunk_runner().poll_once()  # its 4 image messages wait in the queue
    assert not pipeline.reconcile()["store_outage"]
    deadline = Adapters.from_env().catalog.get(request_id).deadline_at  # type: ignore[union-attr]
    adapters, _ = with_fault("catalog", "get", ServerSelectionTimeoutError("MongoDB down"), times=10_000)
    with overriding_roots(adapters):
        for _ in range(3):  # past the deadline, a round every second finds MongoDB down
            time.sleep(1)
            report = pipeline.reconcile()
            assert report["store_outage"] and report["images_failed_at_deadline"] == 0
    report = pipeline.reconcile()
    assert (report["store_outage"], report["deadlines_paused"], report["past_deadline"]) == (False, 1, 0)
    moved = Adapters.from_env().catalog.get(request_id).deadline_at  # type: ignore[union-attr]
    assert moved is not None and deadline is not None and moved - deadline >= timedelta(seconds=3)
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)
