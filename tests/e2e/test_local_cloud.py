"""End to end over HTTP: the gateway, the functions, the runners, moto and SecantusDB in their own processes."""

from __future__ import annotations

import csv
import io
import time

import requests
from PIL import Image

from tests.e2e.conftest import KEYS, PRESIGNED_MAX_BYTES, Cloud

HEADER = "S. No.,Product Name,Input Image Urls\n"


def upload(cloud: Cloud, csv_text: str, key: str = KEYS[0], webhook: str | None = None) -> requests.Response:
    return requests.post(
        f"{cloud.url}/api/v1/upload",
        headers={"x-api-key": key},
        files={"file": ("products.csv", csv_text.encode(), "text/csv")},
        data={"webhookUrl": webhook} if webhook else {},
        timeout=30,
    )


def wait_for_final(cloud: Cloud, status_url: str, key: str = KEYS[0], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        answer = requests.get(f"{cloud.url}{status_url}", headers={"x-api-key": key}, timeout=30)
        assert answer.status_code == 200, answer.text
        document = answer.json()
        seen.append(document["status"])
        if document["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"):
            assert set(seen) <= {"PENDING", "PROCESSING", document["status"]}
            return document
        time.sleep(0.3)
    raise AssertionError(f"not final within {timeout}s; last {seen[-1:]}; log: {cloud.log}")


def test_a_mixed_request_end_to_end(cloud: Cloud, image_server) -> None:
    images = image_server.url
    csv_text = HEADER + (
        f'1,Poster,"{images}/d_exif6_12mp.jpg,{images}/d_cmyk_raindrops.jpg,{images}/gone.jpg"\n'
        f"2,Print,{images}/sk_no_time_for_that_tiny.gif,{images}/d_webp_sunset_1.7mp.webp\n"
        f"3,Card,http://127.0.0.1:1/private.jpg\n"
    )
    answer = upload(cloud, csv_text, webhook=cloud.receiver.url)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert (accepted["totalProducts"], accepted["totalImages"]) == (3, 6)

    result = wait_for_final(cloud, accepted["statusUrl"])
    assert (result["status"], result["succeeded"], result["failed"]) == ("COMPLETED_WITH_ERRORS", 4, 2)
    errors = {(p["serialNumber"], e["index"]): e["code"] for p in result["products"] for e in p["errors"]}
    assert errors == {("1", 2): "HTTP_STATUS", ("3", 0): "ADDRESS_REFUSED"}

    # Every output URL is a plain GET-able JPEG. The 12 MP photo is stored 3024x4032 with EXIF orientation 6
    # (its pixels were turned a quarter left): upright, it is the 4032x3024 landscape it was taken as.
    first = result["products"][0]["outputImageUrls"][0]
    with Image.open(io.BytesIO(requests.get(first, timeout=30).content)) as upright:
        assert upright.format == "JPEG" and upright.size == (4032, 3024)
    for product in result["products"]:
        for url in filter(None, product["outputImageUrls"]):
            got = requests.get(url, timeout=30)
            assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"

    rows = list(csv.reader(io.StringIO(requests.get(result["outputCsvUrl"], timeout=30).text)))
    assert [row[0] for row in rows] == ["S. No.", "1", "2", "3"]
    assert rows[3][-1] == ""  # the only image failed: one empty slot

    deliveries = [
        d for d in cloud.receiver.wait(1, timeout=30) if d["payload"]["data"]["requestId"] == accepted["requestId"]
    ]
    assert len(deliveries) == 1
    assert deliveries[0]["payload"]["data"]["status"] == "COMPLETED_WITH_ERRORS"


def test_api_keys_are_required_and_tenants_are_isolated(cloud: Cloud, image_server) -> None:
    answer = upload(cloud, HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n", key=KEYS[0])
    status_url = answer.json()["statusUrl"]
    missing = requests.get(f"{cloud.url}{status_url}", timeout=10)
    wrong = requests.get(f"{cloud.url}{status_url}", headers={"x-api-key": "nope"}, timeout=10)
    other = requests.get(f"{cloud.url}{status_url}", headers={"x-api-key": KEYS[1]}, timeout=10)
    assert (missing.status_code, missing.json()["code"]) == (403, "INVALID_API_KEY")
    assert (wrong.status_code, wrong.json()["code"]) == (403, "INVALID_API_KEY")
    assert (other.status_code, other.json()["code"]) == (404, "REQUEST_NOT_FOUND")
    unknown_route = requests.get(f"{cloud.url}/api/v1/nothing", headers={"x-api-key": KEYS[0]}, timeout=10)
    assert (unknown_route.status_code, unknown_route.json()["code"]) == (404, "NOT_FOUND")


def test_bad_csv_over_http_is_400_with_rows(cloud: Cloud) -> None:
    answer = upload(cloud, HEADER + "1,Mug,file:///etc/passwd\n")
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {
            "row": 2,
            "column": "Input Image Urls",
            "code": "INVALID_URL",
            "message": "URL 1 (file:///etc/passwd): only http and https URLs are accepted",
        }
    ]


def test_a_burst_over_the_usage_plan_is_throttled(cloud: Cloud) -> None:
    statuses = [
        requests.get(f"{cloud.url}/api/v1/status/unknown", headers={"x-api-key": KEYS[2]}, timeout=10)
        for _ in range(40)
    ]
    codes = [answer.status_code for answer in statuses]
    assert set(codes) == {404, 429}
    assert codes.count(429) >= 20  # burst 5, then about one a second
    assert next(a for a in statuses if a.status_code == 429).json()["code"] == "THROTTLED"


def test_body_over_the_gateway_limit_is_413(cloud: Cloud) -> None:
    answer = requests.post(
        f"{cloud.url}/api/v1/upload",
        headers={"x-api-key": KEYS[1], "content-type": "text/csv"},
        data=b"x" * (10 * 1024 * 1024 + 1),
        timeout=60,
    )
    assert (answer.status_code, answer.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_openapi_document_and_swagger_ui_are_served(cloud: Cloud) -> None:
    spec = requests.get(f"{cloud.url}/api/v1/openapi.json", timeout=10).json()
    assert {"/api/v1/upload", "/api/v1/status/{requestId}"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/api/v1/upload"]["post"]["requestBody"]["content"]
    assert "StatusResponse" in spec["components"]["schemas"]
    page = requests.get(f"{cloud.url}/api/v1/docs", timeout=10)
    assert page.status_code == 200 and "swagger" in page.text.lower()


def start_presigned(cloud: Cloud, webhook: str | None = None) -> dict:
    answer = requests.post(
        f"{cloud.url}/api/v1/uploads", headers={"x-api-key": KEYS[0]}, json={"webhookUrl": webhook}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def send_file(slot: dict, data: bytes) -> requests.Response:
    # The order curl -F uses: the presigned fields, then the file.
    return requests.post(
        slot["upload"]["url"], data=slot["upload"]["fields"], files={"file": ("products.csv", data)}, timeout=60
    )


def test_a_csv_uploaded_straight_to_s3_is_processed(cloud: Cloud, image_server) -> None:
    slot = start_presigned(cloud, cloud.receiver.url)
    assert slot["upload"]["url"].startswith("http://127.0.0.1:")  # the local S3, never the internet
    waiting = requests.get(f"{cloud.url}{slot['statusUrl']}", headers={"x-api-key": KEYS[0]}, timeout=10).json()
    assert (waiting["status"], waiting["detail"]) == ("PENDING", "WAITING_FOR_UPLOAD")
    rows = "".join(f"{n},Item {n},{image_server.url}/sk_chelsea.png\n" for n in range(1, 31))
    assert send_file(slot, (HEADER + rows).encode()).status_code in (200, 204)
    result = wait_for_final(cloud, slot["statusUrl"])
    assert (result["status"], result["succeeded"], result["totalProducts"]) == ("COMPLETED", 30, 30)
    deliveries = [
        d for d in cloud.receiver.wait(2, timeout=30) if d["payload"]["data"]["requestId"] == slot["requestId"]
    ]
    assert [d["payload"]["data"]["status"] for d in deliveries] == ["COMPLETED"]


def test_an_invalid_csv_uploaded_to_s3_ends_failed_with_its_rows(cloud: Cloud) -> None:
    slot = start_presigned(cloud)
    send_file(slot, (HEADER + "1,Mug,gopher://x/1.jpg\n").encode())
    result = wait_for_final(cloud, slot["statusUrl"])
    assert result["status"] == "FAILED"
    assert [(e["row"], e["code"]) for e in result["error"]["errors"]] == [(2, "INVALID_URL")]


def test_the_direct_route_points_big_files_to_the_presigned_one(cloud: Cloud) -> None:
    answer = requests.post(
        f"{cloud.url}/api/v1/upload",
        headers={"x-api-key": KEYS[1], "content-type": "text/csv"},
        data=HEADER.encode() + b"#" * (6 * 1024 * 1024),
        timeout=60,
    )
    assert (answer.status_code, answer.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert "/api/v1/uploads" in answer.json()["message"]


def test_a_file_over_the_presigned_cap_ends_failed(cloud: Cloud, image_server) -> None:
    slot = start_presigned(cloud)
    assert slot["maxBytes"] == PRESIGNED_MAX_BYTES
    rows = "".join(f"{n},Item {n},{image_server.url}/sk_chelsea.png\n" for n in range(1, 2000))
    assert len(rows) > PRESIGNED_MAX_BYTES
    send_file(slot, (HEADER + rows).encode())  # real S3 refuses it at the door (content-length-range); moto does not
    result = wait_for_final(cloud, slot["statusUrl"])
    assert result["status"] == "FAILED"
    assert [e["code"] for e in result["error"]["errors"]] == ["FILE_TOO_LARGE"]


def test_a_burst_of_uploads_is_throttled_and_nothing_is_half_created(cloud: Cloud, image_server) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=cloud.aws_url)

    def stored() -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="ips-uploads")
        return {item["Key"].split("/")[0] for page in pages for item in page.get("Contents", [])}

    before = stored()
    answers = [upload(cloud, HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n", key=KEYS[2]) for _ in range(40)]
    accepted = {answer.json()["requestId"] for answer in answers if answer.status_code == 202}
    assert {answer.status_code for answer in answers} == {202, 429}
    assert len(accepted) < 20
    assert all(answer.json()["code"] == "THROTTLED" for answer in answers if answer.status_code == 429)
    # Exactly the accepted uploads exist behind the API: a throttled one never reached a function.
    assert stored() - before == accepted


def test_a_key_over_its_image_quota_gets_429_through_the_gateway(cloud: Cloud, image_server) -> None:
    from tests.e2e.conftest import QUOTA_KEY

    images = image_server.url
    over = upload(
        cloud,
        HEADER
        + f'1,Mug,"{images}/sk_rocket.jpg,{images}/sk_coffee.png"\n2,Cup,{images}/a.jpg\n'
        + f"3,Pot,{images}/b.jpg\n",
        key=QUOTA_KEY,
    )
    assert (over.status_code, over.json()["code"]) == (429, "IMAGE_QUOTA_EXCEEDED")
    within = upload(cloud, HEADER + f'1,Mug,"{images}/sk_rocket.jpg,{images}/sk_coffee.png"\n', key=QUOTA_KEY)
    assert within.status_code == 202, within.text
    assert upload(cloud, HEADER + f"1,Mug,{images}/sk_rocket.jpg\n").status_code == 202  # other keys unaffected
