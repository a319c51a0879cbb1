"""Hostile requests through the API functions: each ends with its 4xx code or a FAILED request, never a crash."""

from __future__ import annotations

import base64

from tests.integration.conftest import Pipeline
from tests.integration.test_api_handlers import HEADER, multipart
from tests.integration.test_presigned_upload import post_to_s3, start_upload

# One cell over the csv module's 131,072-character field limit (where csv.reader raises csv.Error).
OVERLONG = "x" * 140_000


def test_a_field_over_the_csv_modules_limit_is_field_too_long_on_the_direct_route(pipeline: Pipeline) -> None:
    body, headers = multipart(HEADER + f"1,Mug,https://a.example/1.jpg\n2,{OVERLONG},https://a.example/2.jpg\n")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 400, answer
    assert answer["code"] == "CSV_INVALID"
    assert [(e["row"], e["column"], e["code"]) for e in answer["errors"]] == [(3, "Product Name", "FIELD_TOO_LONG")]
    assert pipeline.queued() == 0


def test_a_field_over_the_csv_modules_limit_fails_a_presigned_upload_with_its_webhook(
    pipeline: Pipeline, receiver
) -> None:
    slot = start_upload(pipeline, receiver.url)
    post_to_s3(slot, (HEADER + f'1,Mug,"https://a.example/1.jpg,{OVERLONG}"\n').encode())
    assert pipeline.s3_runner().poll_once()
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["error"]["code"]) == ("FAILED", "CSV_INVALID")
    assert [(e["row"], e["column"], e["code"]) for e in status["error"]["errors"]] == [
        (2, "Input Image Urls", "FIELD_TOO_LONG")
    ]
    assert pipeline.queued() == 0
    assert pipeline.notify()  # the webhook's one owner, notify, sends it
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["status"] == "FAILED"
    assert delivery["payload"]["data"]["error"]["code"] == "CSV_INVALID"


def test_forged_cursors_are_400_cursor_invalid(pipeline: Pipeline) -> None:
    body, headers = multipart(HEADER + "1,Mug,https://a.example/1.jpg\n")
    _, accepted = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    pipeline.chunk_runner().poll_once()  # the chunk: the product exists, so the cursor reaches the catalog query
    for forged in ("row:²", "row:" + "9" * 44, "row:-5", "row:1e3"):
        cursor = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
        status, answer = pipeline.api("GET", f"/api/v1/status/{accepted['requestId']}", query=f"cursor={cursor}")
        assert (status, answer["code"]) == (400, "CURSOR_INVALID"), forged
