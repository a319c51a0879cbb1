"""The whole pipeline in-process: upload -> queue -> process -> stream -> notify, with the local cloud's runners,
moto, a real MongoDB wire server, a local image server and a webhook receiver verifying signatures."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import urlsplit

import boto3
import requests

from localcloud.peers import WebhookReceiver
from tests.integration.conftest import TENANT_SECRET, Pipeline
from tests.integration.test_api_handlers import HEADER, multipart


def mixed_csv(images: str) -> str:
    # The refused URL is loopback on a port nothing is allowed to reach. (Not 169.254.169.254 here: under
    # mock_aws, moto answers the instance-metadata address itself, before any HTTP client runs.)
    return HEADER + (
        f'1,Mug,"{images}/d_exif3_rocket.jpg,{images}/missing.jpg"\n'
        f'2,Lamp,"{images}/sk_coffee.png,{images}/MANIFEST.tsv,http://127.0.0.1:9/latest/meta-data/"\n'
        f"3,Desk,{images}/d_alpha_yellowflower.png\n"
    )


def upload(pipeline: Pipeline, csv_text: str, webhook: str) -> str:
    body, headers = multipart(csv_text, webhook)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 202, answer
    return answer["requestId"]


def test_mixed_request_completes_with_errors_and_each_reason(pipeline: Pipeline, image_server, receiver) -> None:
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    pipeline.drain_queue()
    assert pipeline.notify()

    status, result = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert status == 200
    assert (result["status"], result["total"], result["succeeded"], result["failed"]) == (
        "COMPLETED_WITH_ERRORS",
        6,
        3,
        3,
    )
    errors = {
        (product["serialNumber"], error["index"]): error["code"]
        for product in result["products"]
        for error in product["errors"]
    }
    assert errors == {("1", 1): "HTTP_STATUS", ("2", 1): "NOT_AN_IMAGE", ("2", 2): "ADDRESS_REFUSED"}
    outputs = [product["outputImageUrls"] for product in result["products"]]
    assert [[url is not None for url in urls] for urls in outputs] == [
        [True, False],
        [True, False, False],
        [True],
    ]
    assert re.fullmatch(rf"http://assets\.invalid/assets/{request_id}/2/0-[\w-]{{22}}\.jpg", outputs[0][0])
    # Each stored image's size and its source's, where it succeeded (what the upload page shows as saved).
    sizes = [list(zip(p["inputImageBytes"], p["outputImageBytes"], strict=True)) for p in result["products"]]
    assert [[before is not None for before, _ in product] for product in sizes] == [
        [True, False],
        [True, False, False],
        [True],
    ]
    assert all(after > 0 and before > 0 for product in sizes for before, after in product if before is not None)

    # The processed (public) bucket holds only the images; the output CSV is in the private uploads bucket.
    s3 = boto3.client("s3")
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=pipeline.resources.processed_bucket)["Contents"])
    assert keys == sorted(
        url.removeprefix("http://assets.invalid/assets/") for url in (outputs[0][0], outputs[1][0], outputs[2][0])
    )
    uploads = pipeline.resources.uploads_bucket
    output = s3.get_object(Bucket=uploads, Key=f"{request_id}/output.csv")["Body"].read().decode()
    rows = list(csv.reader(io.StringIO(output)))
    assert rows[0][-1] == "Output Image Urls"
    assert [row[-1].count(",") for row in rows[1:]] == [1, 2, 0]  # one slot per input, failures left empty
    assert rows[1][-1].split(",") == [outputs[0][0], ""]
    csv_url = urlsplit(result["outputCsvUrl"])
    assert uploads in csv_url.netloc + csv_url.path and csv_url.path.endswith(f"/{request_id}/output.csv")
    assert "X-Amz-Signature=" in csv_url.query and "X-Amz-Expires=900" in csv_url.query  # presigned, short-lived

    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["id"] == f"msg_{request_id}"
    data = delivery["payload"]["data"]
    assert data == {
        "requestId": request_id,
        "status": "COMPLETED_WITH_ERRORS",
        "total": 6,
        "succeeded": 3,
        "failed": 3,
        "outputCsvUrl": data["outputCsvUrl"],
        "options": {"format": "jpeg", "quality": 50, "maxWidth": None, "maxHeight": None, "background": "#ffffff"},
        "savings": result["savings"],
        "reused": 0,
    }
    assert requests.get(data["outputCsvUrl"], timeout=10).text == output  # the webhook's own presigned GET
    assert result["webhook"]["delivered"] is True
    # The request's savings (summed in the counter as images are counted) are the sums of its images' records.
    succeeded = [
        image for product in result["products"] for image in product["images"] if image["status"] == "SUCCEEDED"
    ]
    assert len(succeeded) == 3 and all(image["outputFormat"] == "JPEG" and image["width"] > 0 for image in succeeded)
    bytes_in, bytes_out = sum(i["inputBytes"] for i in succeeded), sum(i["outputBytes"] for i in succeeded)
    assert result["savings"] == {"bytesIn": bytes_in, "bytesOut": bytes_out, "ratio": round(bytes_out / bytes_in, 4)}


def duplicate_every_message(pipeline: Pipeline, url: str) -> int:
    """Take every message off the queue and put it back twice: a real at-least-once duplicate of each."""
    sqs = boto3.client("sqs")
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    for body in bodies * 2:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    return len(bodies)


def test_every_message_delivered_twice_changes_nothing(pipeline: Pipeline, image_server, receiver) -> None:
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    # The chunk message twice: its second delivery finds the chunk's progress complete and sends nothing again.
    assert duplicate_every_message(pipeline, pipeline.resources.chunks_queue_url) == 1
    pipeline.drain_queue(pipeline.chunk_runner())
    # Then every image message twice.
    assert duplicate_every_message(pipeline, pipeline.resources.queue_url) == 6
    pipeline.drain_queue()
    pipeline.notify()
    pipeline.notify()
    _, result = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert (result["status"], result["succeeded"], result["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 3)
    assert len(receiver.wait(1, timeout=10)) == 1

    # The completion step itself running again (a stream retry) sends no second webhook.
    from ips.completion.service import complete_request
    from ips_runtime.roots import NOTIFY

    assert complete_request(request_id, NOTIFY()).value == "COMPLETED_WITH_ERRORS"
    assert pipeline.send_webhooks() == 0  # delivered already: nothing queued
    assert len(receiver.deliveries) == 1
    assert pipeline.queued() == 0 and pipeline.queued(pipeline.resources.dead_letter_url) == 0


def test_webhook_retries_with_the_same_id_until_the_receiver_accepts(
    pipeline: Pipeline, image_server, monkeypatch, function_env
) -> None:
    with WebhookReceiver(TENANT_SECRET, fail_first=2) as flaky:
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{flaky.origin}")
        from ips_runtime.roots import reset_roots

        reset_roots()
        request_id = upload(pipeline, HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n", flaky.url)
        pipeline.drain_queue()
        assert pipeline.stream_runner().poll_once()
        assert flaky.attempts == 0  # notify completed the request and queued its webhook: it posts nothing
        pipeline.webhooks_until(lambda: flaky.deliveries)  # each attempt a wake-up, each retry after its delay
        [delivery] = flaky.deliveries
        assert flaky.attempts == 3
        assert delivery["id"] == f"msg_{request_id}"
        _, result = pipeline.api("GET", f"/api/v1/status/{request_id}")
        assert result["status"] == "COMPLETED"
        assert (result["webhook"]["delivered"], result["webhook"]["attempts"]) == (True, 3)
