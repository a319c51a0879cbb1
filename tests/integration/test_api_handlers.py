"""The API functions through API Gateway proxy events, against moto and a real MongoDB wire server."""

from __future__ import annotations

import json

import boto3
import requests
from pymongo import MongoClient

from tests.integration.conftest import API_KEY, Pipeline

HEADER = "S. No.,Product Name,Input Image Urls\n"


def multipart(csv_text: str | bytes, webhook: str | None = None) -> tuple[bytes, dict[str, str]]:
    data = {"webhookUrl": webhook} if webhook else {}
    prepared = requests.Request(
        "POST", "http://unused.invalid/", files={"file": ("products.csv", csv_text, "text/csv")}, data=data
    ).prepare()
    return prepared.body, {"content-type": prepared.headers["Content-Type"]}  # type: ignore[return-value]


def stored_objects(bucket: str) -> list[str]:
    return [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_multipart_upload_is_accepted_stored_and_fanned_out(pipeline: Pipeline, image_server, function_env) -> None:
    csv_text = (
        HEADER
        + f'1,Mug,"{image_server.url}/d_05mp_friends.jpg,{image_server.url}/sk_coffee.png"\n'
        + f"2,Lamp,{image_server.url}/sk_rocket.jpg\n"
    )
    body, headers = multipart(csv_text)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 202, answer
    request_id = answer["requestId"]
    assert answer == {
        "requestId": request_id,
        "status": "PENDING",
        "totalProducts": 2,
        "totalImages": 3,
        "statusUrl": f"/api/v1/status/{request_id}",
    }
    assert stored_objects(pipeline.resources.uploads_bucket) == [f"{request_id}/input.csv"]
    # Accepting queued one chunk message; the expand function turns it into products and image messages.
    assert (pipeline.queued(pipeline.resources.chunks_queue_url), pipeline.queued()) == (1, 0)
    database = MongoClient(function_env["MONGODB_URI"])[function_env["MONGODB_DATABASE"]]
    assert database.products.count_documents({"requestId": request_id}) == 0
    pipeline.chunk_runner().poll_once()
    assert database.products.count_documents({"requestId": request_id}) == 2
    assert pipeline.queued() == 3
    status, progress = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert status == 200
    assert (progress["status"], progress["total"], progress["succeeded"], progress["failed"]) == (
        "PENDING",
        3,
        0,
        0,
    )
    assert [product["outputImageUrls"] for product in progress["products"]] == [[None, None], [None]]


def test_raw_csv_body_with_webhook_query_parameter(pipeline: Pipeline, image_server) -> None:
    body = (HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n").encode()
    status, answer = pipeline.api(
        "POST",
        "/api/v1/upload",
        body=body,
        headers={"content-type": "text/csv"},
        query=f"webhookUrl={image_server.url}/hook",
    )
    assert status == 202, answer
    assert answer["totalImages"] == 1


def test_invalid_csv_lists_every_problem_and_stores_nothing(pipeline: Pipeline, function_env) -> None:
    body, headers = multipart(HEADER + "1,Mug,ftp://x/1.jpg\n1,,https://x/2.jpg\n3,Lamp,\n")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 400
    assert answer["code"] == "CSV_INVALID"
    assert [(error["row"], error["column"], error["code"]) for error in answer["errors"]] == [
        (2, "Input Image Urls", "INVALID_URL"),
        (3, "S. No.", "DUPLICATE_SERIAL"),
        (3, "Product Name", "EMPTY_PRODUCT_NAME"),
        (4, "Input Image Urls", "NO_URLS"),
    ]
    assert stored_objects(pipeline.resources.uploads_bucket) == []
    assert pipeline.queued() == 0
    database = MongoClient(function_env["MONGODB_URI"])[function_env["MONGODB_DATABASE"]]
    assert database.requests.count_documents({}) == 0 and database.products.count_documents({}) == 0


def test_a_webhook_url_to_a_private_address_is_refused_at_upload(pipeline: Pipeline, image_server) -> None:
    body, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n", webhook="http://10.0.0.7/hook")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 400
    assert answer["code"] == "WEBHOOK_URL_INVALID"
    assert answer["errors"][0]["column"] == "webhookUrl"
    assert pipeline.queued() == 0


def test_a_refused_webhook_name_is_explained_without_the_address_it_resolves_to(
    pipeline: Pipeline, image_server
) -> None:
    # localhost resolves (from the hosts file, not DNS) to loopback addresses: the answer says why, not which.
    body, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n", webhook="http://localhost:9/hook")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert (status, answer["code"]) == (400, "WEBHOOK_URL_INVALID")
    assert "localhost:9 resolves to an address that is not public" in answer["errors"][0]["message"]
    assert "127.0.0.1" not in json.dumps(answer) and "::1" not in json.dumps(answer)


def test_wrong_content_type_is_415_and_oversized_body_is_413(pipeline: Pipeline, function_env, monkeypatch) -> None:
    status, answer = pipeline.api(
        "POST", "/api/v1/upload", body=b'{"a": 1}', headers={"content-type": "application/json"}
    )
    assert (status, answer["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    big = (HEADER + "1,Mug,https://a.example/1.jpg\n").encode() + b"#" * (6 * 1024 * 1024)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=big, headers={"content-type": "text/csv"})
    assert (status, answer["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert pipeline.queued() == 0


def test_any_csv_over_the_cap_is_413_so_clients_switch_routes(pipeline: Pipeline, monkeypatch) -> None:
    from ips_runtime.roots import reset_roots

    monkeypatch.setenv("CSV_MAX_BYTES", "1000")
    reset_roots()
    just_over = (HEADER + "1,Mug,https://a.example/1.jpg\n").encode() + b"#" * 1000  # inside the envelope room
    for body, headers in (multipart(just_over), (just_over, {"content-type": "text/csv"})):
        status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
        assert (status, answer["code"]) == (413, "PAYLOAD_TOO_LARGE")
        assert "/api/v1/uploads" in answer["message"]
    assert pipeline.queued() == 0


def test_multipart_without_a_file_field(pipeline: Pipeline) -> None:
    prepared = requests.Request("POST", "http://unused.invalid/", files={"other": ("x.csv", b"a")}).prepare()
    status, answer = pipeline.api(
        "POST",
        "/api/v1/upload",
        body=prepared.body,
        headers={"content-type": prepared.headers["Content-Type"]},
    )
    assert (status, answer["code"]) == (400, "FILE_MISSING")


def test_another_keys_request_is_404_like_an_unknown_one(pipeline: Pipeline, image_server) -> None:
    body, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n")
    _, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    request_id = answer["requestId"]
    assert pipeline.api("GET", f"/api/v1/status/{request_id}", api_key=API_KEY)[0] == 200
    other = pipeline.api("GET", f"/api/v1/status/{request_id}", api_key="someone-else")
    unknown = pipeline.api("GET", "/api/v1/status/00000000-0000-0000-0000-000000000000")
    assert other == (
        404,
        {
            "code": "REQUEST_NOT_FOUND",
            "message": f"No request {request_id}.",
            "errors": [],
            "errorsOmitted": 0,
        },
    )
    assert unknown[0] == 404 and unknown[1]["code"] == "REQUEST_NOT_FOUND"


def test_a_fan_out_that_fails_ends_the_request_failed_not_pending(
    pipeline: Pipeline, image_server, monkeypatch
) -> None:
    from ips_runtime.roots import reset_roots

    # A queue that does not exist: SQS itself refuses the messages after the request was created.
    missing_queue = pipeline.resources.chunks_queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    monkeypatch.setenv("CHUNKS_QUEUE_URL", missing_queue)
    reset_roots()
    body, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert (status, answer["code"]) == (500, "INTERNAL_ERROR")
    [request_id] = [key.split("/")[0] for key in stored_objects(pipeline.resources.uploads_bucket)]
    status, result = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert (status, result["status"]) == (200, "FAILED")
    assert result["error"]["code"] == "FAN_OUT_FAILED"
    assert result["outputCsvUrl"] is None


def test_the_catalog_indexes_products_by_request_and_row_from_the_writing_functions_only(function_env) -> None:
    from ips_runtime.roots import STATUS, UPLOAD

    database = MongoClient(function_env["MONGODB_URI"])[function_env["MONGODB_DATABASE"]]
    STATUS()  # the status route only reads: its cold start writes nothing, not even an index
    assert "products" not in database.list_collection_names()
    UPLOAD()  # requests start at the upload function, whose cold start makes the indexes
    # Status pages and the output CSV read a request's products in row order (100,000 of them, at most).
    indexes = database.products.index_information()
    assert [("requestId", 1), ("row", 1)] in [index["key"] for index in indexes.values()]
