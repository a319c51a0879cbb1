"""Big CSVs straight to S3: the presigned POST, the S3 notification, streamed validation, async fan-out."""

from __future__ import annotations

import json

import boto3
import requests

from tests.integration.conftest import Pipeline
from tests.integration.test_api_handlers import HEADER


def start_upload(pipeline: Pipeline, webhook: str | None = None) -> dict:
    body = json.dumps({"webhookUrl": webhook, "filename": "big.csv"} if webhook else {}).encode()
    status, answer = pipeline.api("POST", "/api/v1/uploads", body=body, headers={"content-type": "application/json"})
    assert status == 201, answer
    return answer


def post_to_s3(slot: dict, data: bytes) -> requests.Response:
    """What the client does with the answer: the fields first, the file last (as curl -F would send them)."""
    return requests.post(
        slot["upload"]["url"], data=slot["upload"]["fields"], files={"file": ("big.csv", data, "text/csv")}, timeout=30
    )


def test_presigned_upload_is_bound_to_one_key_a_type_and_a_size(pipeline: Pipeline) -> None:
    slot = start_upload(pipeline)
    request_id = slot["requestId"]
    fields = slot["upload"]["fields"]
    assert fields["key"] == f"incoming/{request_id}.csv"
    assert fields["Content-Type"] == "text/csv"
    policy = json.loads(__import__("base64").b64decode(fields["policy"]))
    assert ["content-length-range", 1, slot["maxBytes"]] in policy["conditions"]
    assert {"Content-Type": "text/csv"} in policy["conditions"]
    assert slot["expiresIn"] == 900 and slot["statusUrl"] == f"/api/v1/status/{request_id}"

    _, status = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert (status["status"], status["detail"], status["total"]) == ("PENDING", "WAITING_FOR_UPLOAD", 0)
    assert status["uploadExpiresAt"] is not None


def test_a_big_csv_through_s3_is_validated_fanned_out_and_completed(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    monkeypatch.setenv("CHUNK_IMAGES", "40")
    from ips_runtime.roots import reset_roots

    reset_roots()
    rows = "".join(f"{n},Product {n},{image_server.url}/sk_rocket.jpg\n" for n in range(1, 101))
    slot = start_upload(pipeline, receiver.url)
    assert post_to_s3(slot, (HEADER + rows).encode()).status_code in (200, 204)
    assert pipeline.s3_runner().poll_once()

    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["detail"], status["total"], status["totalProducts"]) == ("PENDING", None, 100, 100)
    assert pipeline.queued(pipeline.resources.chunks_queue_url) == 3  # 100 images in chunks of 40
    pipeline.drain_queue()
    assert pipeline.notify()
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}", query="limit=30")
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED", 100, 0)
    assert [product["serialNumber"] for product in status["products"]] == [str(n) for n in range(1, 31)]
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["status"] == "COMPLETED"


def test_an_invalid_csv_through_s3_ends_failed_with_rows_and_the_webhook(pipeline: Pipeline, receiver) -> None:
    slot = start_upload(pipeline, receiver.url)
    post_to_s3(slot, (HEADER + "1,Mug,ftp://x/1.jpg\n2,,https://x/2.jpg\n").encode())
    pipeline.s3_runner().poll_once()
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert status["status"] == "FAILED" and status["detail"] is None
    assert status["error"]["code"] == "CSV_INVALID"
    assert [(e["row"], e["column"], e["code"]) for e in status["error"]["errors"]] == [
        (2, "Input Image Urls", "INVALID_URL"),
        (3, "Product Name", "EMPTY_PRODUCT_NAME"),
    ]
    assert pipeline.queued() == 0
    # Ingest signs nothing: the counter's OPEN -> FAILED flip brings the request to notify, the webhook's owner.
    assert receiver.deliveries == []
    assert pipeline.notify()
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["status"] == "FAILED"
    assert delivery["payload"]["data"]["error"]["code"] == "CSV_INVALID"
    # The same S3 event delivered again changes nothing and sends nothing.
    pipeline.functions["ingest"].invoke(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Post",
                    "s3": {
                        "bucket": {"name": pipeline.resources.uploads_bucket},
                        "object": {"key": f"incoming/{slot['requestId']}.csv"},
                    },
                }
            ]
        }
    )
    assert len(receiver.deliveries) == 1


def test_a_file_over_the_size_cap_is_refused_even_where_s3_does_not_enforce_it(
    pipeline: Pipeline, monkeypatch, image_server
) -> None:
    monkeypatch.setenv("PRESIGNED_CSV_MAX_BYTES", "200")
    from ips_runtime.roots import reset_roots

    reset_roots()
    slot = start_upload(pipeline)
    assert slot["maxBytes"] == 200
    rows = "".join(f"{n},P{n},{image_server.url}/sk_rocket.jpg\n" for n in range(1, 20))
    post_to_s3(slot, (HEADER + rows).encode())  # moto accepts it; real S3 would refuse it with 400
    pipeline.s3_runner().poll_once()
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert status["status"] == "FAILED"
    assert [e["code"] for e in status["error"]["errors"]] == ["FILE_TOO_LARGE"]
    assert pipeline.queued() == 0


def test_an_upload_that_never_comes_is_ended_by_the_reconciler_with_its_webhook(
    pipeline: Pipeline, receiver, monkeypatch
) -> None:
    monkeypatch.setenv("UPLOAD_EXPIRY_SECONDS", "0")
    monkeypatch.setenv("UPLOAD_GRACE_SECONDS", "0")
    from ips_runtime.roots import reset_roots

    reset_roots()
    slot = start_upload(pipeline, receiver.url)
    report = pipeline.reconcile()
    assert report["uploads_expired"] == 1
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["error"]["code"]) == ("FAILED", "UPLOAD_EXPIRED")
    assert status["detail"] is None
    assert pipeline.notify()
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["error"]["code"] == "UPLOAD_EXPIRED"
    assert pipeline.reconcile()["uploads_expired"] == 0  # once


def test_a_file_s3_accepted_in_time_is_not_dropped_by_the_expiry(pipeline: Pipeline, image_server, monkeypatch) -> None:
    """Reading the status (or a reconciler round) after the expiry while the ingestion has not run yet must not
    end a request whose file S3 accepted in time."""
    monkeypatch.setenv("UPLOAD_EXPIRY_SECONDS", "1")
    monkeypatch.setenv("UPLOAD_GRACE_SECONDS", "0")
    from ips_runtime.roots import reset_roots

    reset_roots()
    slot = start_upload(pipeline)
    assert post_to_s3(slot, (HEADER + f"1,Mug,{image_server.url}/sk_rocket.jpg\n").encode()).status_code in (200, 204)
    __import__("time").sleep(1.1)
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert status["status"] == "PENDING"
    assert pipeline.reconcile()["uploads_expired"] == 0
    assert pipeline.s3_runner().poll_once()
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["total"], status["detail"]) == ("PENDING", 1, None)


def test_status_pages_through_products_with_an_opaque_cursor(pipeline: Pipeline, image_server) -> None:
    from tests.integration.test_api_handlers import multipart

    rows = "".join(f"{n},P{n},{image_server.url}/missing-{n}.jpg\n" for n in range(1, 26))
    body, headers = multipart(HEADER + rows)
    _, accepted = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    pipeline.chunk_runner().poll_once()  # expand the chunk
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=10" + (f"&cursor={cursor}" if cursor else "")
        status, page = pipeline.api("GET", f"/api/v1/status/{accepted['requestId']}", query=query)
        assert status == 200
        seen += [product["serialNumber"] for product in page["products"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert (pages, seen) == (3, [str(n) for n in range(1, 26)])
    status, refused = pipeline.api("GET", f"/api/v1/status/{accepted['requestId']}", query="cursor=bm9wZQ")
    assert (status, refused["code"]) == (400, "CURSOR_INVALID")
    status, refused = pipeline.api("GET", f"/api/v1/status/{accepted['requestId']}", query="limit=0")
    assert (status, refused["code"]) == (400, "REQUEST_INVALID")


def test_a_second_upload_through_the_same_policy_changes_nothing_that_was_ingested(
    pipeline: Pipeline, image_server, monkeypatch
) -> None:
    """Issue 9: the POST policy can be reused until it expires, and chunks used to re-read the live object, so a
    file sent after ingestion replaced what was processed. The ingested version is pinned (copied by its ETag)."""
    monkeypatch.setenv("CHUNK_IMAGES", "2")
    from ips_runtime.roots import reset_roots

    reset_roots()
    slot = start_upload(pipeline)
    first = "".join(f"{n},Genuine {n},{image_server.url}/missing-{n}.jpg\n" for n in range(1, 5))
    # The same length and shape, so on the old code every chunk's byte range read the forgery's rows.
    forged = "".join(f"{n},Forgery {n},{image_server.url}/missing-{n}.jpg\n" for n in range(1, 5))
    assert len(first) == len(forged)
    assert post_to_s3(slot, (HEADER + first).encode()).status_code in (200, 204)
    assert pipeline.s3_runner().poll_once()  # ingested: 2 chunks queued, not yet expanded
    assert pipeline.queued(pipeline.resources.chunks_queue_url) == 2

    assert post_to_s3(slot, (HEADER + forged).encode()).status_code in (200, 204)  # the same policy, again
    assert pipeline.s3_runner().poll_once()  # its ObjectCreated is ignored: the request was ingested
    assert pipeline.queued(pipeline.resources.chunks_queue_url) == 2  # nothing more fanned out
    pipeline.drain_queue()

    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert [product["productName"] for product in status["products"]] == [f"Genuine {n}" for n in range(1, 5)]
    assert status["total"] == 4


def test_a_presigned_upload_is_created_at_the_deployed_log_level(pipeline: Pipeline, receiver) -> None:
    # Lambda runs the functions at powertools' default level, INFO: a log line at that level must not break the
    # route (its `filename` extra overwrote a LogRecord attribute, so every POST /api/v1/uploads answered 500).
    from functions.upload import handler

    level = handler.logger.log_level
    handler.logger.setLevel("INFO")
    try:
        slot = start_upload(pipeline, receiver.url)  # with a file name, which the INFO line logs
    finally:
        handler.logger.setLevel(level)
    assert slot["requestId"]


def test_an_upload_whose_ingestion_failed_every_try_is_ingested_by_the_reconciler(
    pipeline: Pipeline, image_server, receiver
) -> None:
    """MongoDB is down while S3's event is delivered: every try of the ingestion fails and the event goes to the
    ingest failures queue (Lambda's on-failure destination). Before, nothing drained it and the request waited
    for its upload for ever, with no webhook."""
    from pymongo.errors import ServerSelectionTimeoutError

    from ips_runtime.roots import overriding_roots
    from localcloud.runners import S3NotificationRunner
    from tests.integration.resilience.conftest import with_fault

    slot = start_upload(pipeline, receiver.url)
    assert post_to_s3(slot, (HEADER + f"1,Mug,{image_server.url}/sk_rocket.jpg\n").encode()).status_code in (200, 204)
    resources = pipeline.resources
    events = S3NotificationRunner(  # as the topology's, with no retry left (the retries failed too)
        boto3.client("sqs"),
        resources.upload_events_url,
        pipeline.functions["ingest"],
        retry_attempts=0,
        failures_url=resources.ingest_failures_url,
    )
    adapters, _ = with_fault("catalog", "get", ServerSelectionTimeoutError("MongoDB down"), times=10_000)
    with overriding_roots(adapters):
        assert events.poll_once()
    assert pipeline.queued(resources.ingest_failures_url) == 1
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["detail"]) == ("PENDING", "WAITING_FOR_UPLOAD")

    report = pipeline.reconcile()  # MongoDB is back
    assert report["uploads_reingested"] == 1
    assert pipeline.queued(resources.ingest_failures_url) == 0
    pipeline.drain_queue()
    assert pipeline.notify()
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["succeeded"]) == ("COMPLETED", 1)
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["status"] == "COMPLETED"


def test_a_request_awaiting_its_upload_past_its_deadline_ends_failed_with_its_webhook(
    pipeline: Pipeline, image_server, receiver, monkeypatch
) -> None:
    """The file came, but its ingestion never went through: the request is held to its deadline like any other
    (before, the round returned before its deadline check while a request awaited its upload, and the expiry
    skipped it because the file was there)."""
    monkeypatch.setenv("UPLOAD_EXPIRY_SECONDS", "0")
    monkeypatch.setenv("REQUEST_DEADLINE_SECONDS", "0")
    from ips_runtime.roots import reset_roots

    reset_roots()
    slot = start_upload(pipeline, receiver.url)
    assert post_to_s3(slot, (HEADER + f"1,Mug,{image_server.url}/sk_rocket.jpg\n").encode()).status_code in (200, 204)
    report = pipeline.reconcile()  # the event was lost: no ingestion ran
    assert (report["past_deadline"], report["uploads_reingested"]) == (1, 0)
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["error"]["code"]) == ("FAILED", "DEADLINE_EXCEEDED")
    assert pipeline.notify()
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["error"]["code"] == "DEADLINE_EXCEEDED"
