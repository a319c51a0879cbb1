"""The output CSV is private (issue 9: whoever saw one storefront image could fetch the CSV with every product
name and input URL): it is reachable only through a short-lived presigned GET, never under /assets/, and no
image URL leads to another image or to the CSV."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

import requests

from tests.e2e.conftest import KEYS, Cloud
from tests.e2e.test_local_cloud import HEADER, upload, wait_for_final


def derivations(image_url: str, request_id: str) -> list[str]:
    """What an attacker holding one image URL would try: siblings, the CSVs by the old and new key schemes,
    listings, traversal and encoded forms."""
    base, path = image_url.split("/assets/", 1)
    assets = f"{base}/assets"
    row, name = path.split("/")[1:3]
    index = name.split("-")[0]
    candidates = [
        f"{request_id}/output.csv",
        f"{request_id}/input.csv",
        f"incoming/{request_id}.csv",
        f"{request_id}/{row}/output.csv",
        f"{request_id}/{row}/{index}.jpg",  # the old, guessable image key
        f"{request_id}/{row}/{int(index) + 1}.jpg",
        f"{request_id}/{int(row) + 1}/{index}.jpg",
        f"{request_id}/",
        f"{request_id}",
        "",
        "?list-type=2",
        f"{request_id}/../{request_id}/output.csv",
        quote(f"{request_id}/output.csv", safe=""),
        f"{request_id}%2Foutput.csv",
        f"..%2Fips-uploads%2F{request_id}%2Foutput.csv",
        f"../ips-uploads/{request_id}/output.csv",
        f"ips-uploads/{request_id}/output.csv",
    ]
    return [f"{assets}/{candidate}" for candidate in candidates]


def test_the_output_csv_is_reachable_only_by_its_presigned_url(cloud: Cloud, image_server) -> None:
    images = image_server.url
    answer = upload(cloud, HEADER + f'1,Secret Product,"{images}/sk_rocket.jpg,{images}/sk_coffee.png"\n')
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["requestId"]
    result = wait_for_final(cloud, answer.json()["statusUrl"])
    assert result["status"] == "COMPLETED"
    first, second = result["products"][0]["outputImageUrls"]
    # Unguessable from one another: the same request, row and position scheme, each with its own tag.
    for url, index in ((first, 0), (second, 1)):
        assert re.fullmatch(rf"{cloud.url}/assets/{request_id}/2/{index}-[\w-]{{22}}\.jpg", url)
    assert first.rsplit("-", 1)[1] != second.rsplit("-", 1)[1]
    served = requests.get(first, timeout=30)
    assert served.status_code == 200
    # Immutable outputs: cached for as long as they are kept, as the image's stored metadata says (issue 21).
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"

    for attempt in derivations(first, request_id):
        got = requests.get(attempt, timeout=30)
        assert got.status_code == 404, (attempt, got.status_code)
        assert b"Secret Product" not in got.content

    # The CSV: a presigned GET on the private bucket (the local cloud's S3 emulator), short-lived.
    csv_url = urlsplit(result["outputCsvUrl"])
    assert f"{csv_url.scheme}://{csv_url.netloc}" == cloud.aws_url
    assert "X-Amz-Signature=" in csv_url.query and "X-Amz-Expires=900" in csv_url.query
    fetched = requests.get(result["outputCsvUrl"], timeout=30)
    assert fetched.status_code == 200 and "Secret Product" in fetched.text
    # Without the signature the bucket is closed.
    assert requests.get(f"{cloud.aws_url}{csv_url.path}", timeout=30).status_code == 403
    # A fresh URL on every read, for its own tenant only.
    again = requests.get(f"{cloud.url}/api/v1/status/{request_id}", headers={"x-api-key": KEYS[0]}, timeout=30)
    assert urlsplit(again.json()["outputCsvUrl"]).path == csv_url.path
    other = requests.get(f"{cloud.url}/api/v1/status/{request_id}", headers={"x-api-key": KEYS[1]}, timeout=30)
    assert other.status_code == 404
