"""Per-request options through the API functions and the pipeline (moto, a real MongoDB wire server, real codecs)."""

from __future__ import annotations

import io
import json
import re

import boto3
import requests
from PIL import Image

from tests.integration.conftest import Pipeline
from tests.integration.test_api_handlers import HEADER, stored_objects


def form(csv_text: str, **fields: str) -> tuple[bytes, dict[str, str]]:
    prepared = requests.Request(
        "POST", "http://unused.invalid/", files={"file": ("products.csv", csv_text, "text/csv")}, data=fields
    ).prepare()
    return prepared.body, {"content-type": prepared.headers["Content-Type"]}  # type: ignore[return-value]


def test_form_options_make_webp_fitted_inside_the_box(pipeline: Pipeline, image_server) -> None:
    csv_text = HEADER + f'1,Mug,"{image_server.url}/d_alpha_yellowflower.png,{image_server.url}/sk_coffee.png"\n'
    body, headers = form(csv_text, format="webp", quality="60", maxWidth="64", maxHeight="64")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 202, answer
    request_id = answer["requestId"]
    pipeline.drain_queue()
    assert pipeline.notify()

    status, result = pipeline.api("GET", f"/api/v1/status/{request_id}")
    assert result["status"] == "COMPLETED", result
    assert result["options"] == {
        "format": "webp",
        "quality": 60,
        "maxWidth": 64,
        "maxHeight": 64,
        "background": "#ffffff",
    }
    [product] = result["products"]
    # Each key is {requestId}/{row}/{index}-{tag}.webp: the tag, then the format's extension.
    keys = [url.rsplit("/assets/", 1)[1] for url in product["outputImageUrls"]]
    assert all(re.fullmatch(rf"{request_id}/2/{i}-[\w-]{{22}}\.webp", key) for i, key in enumerate(keys)), keys
    s3, bucket = boto3.client("s3"), pipeline.resources.processed_bucket
    for key, detail in zip(keys, product["images"], strict=True):
        assert detail["outputFormat"] == "WEBP" and max(detail["width"], detail["height"]) <= 64
        stored = s3.get_object(Bucket=bucket, Key=key)
        assert stored["ContentType"] == "image/webp"
        image = Image.open(io.BytesIO(stored["Body"].read()))
        assert (image.format, image.size) == ("WEBP", (detail["width"], detail["height"]))
    assert Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read())).mode == (
        "RGBA"  # the PNG's transparency is kept
    )


def test_query_options_apply_to_a_raw_csv_body(pipeline: Pipeline, image_server) -> None:
    csv_text = HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n"
    status, answer = pipeline.api(
        "POST",
        "/api/v1/upload",
        body=csv_text.encode(),
        headers={"content-type": "text/csv"},
        query="format=avif&quality=40&background=%23000000",
    )
    assert status == 202, answer
    status, result = pipeline.api("GET", f"/api/v1/status/{answer['requestId']}")
    assert result["options"] == {
        "format": "avif",
        "quality": 40,
        "maxWidth": None,
        "maxHeight": None,
        "background": "#000000",
    }


def test_a_bad_option_is_400_naming_the_field_and_nothing_is_stored(pipeline: Pipeline, image_server) -> None:
    body, headers = form(HEADER + f"1,Mug,{image_server.url}/sk_coffee.png\n", format="gif", quality="0")
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 400
    assert answer["code"] == "OPTION_INVALID"
    assert {(error["column"], error["code"]) for error in answer["errors"]} == {
        ("format", "UNKNOWN_VALUE"),
        ("quality", "OUT_OF_RANGE"),
    }
    assert stored_objects(pipeline.resources.uploads_bucket) == []
    assert pipeline.queued() == 0


def test_the_presigned_route_takes_json_options(pipeline: Pipeline) -> None:
    def start(**fields: object) -> tuple[int, dict[str, object]]:
        return pipeline.api(
            "POST",
            "/api/v1/uploads",
            body=json.dumps(fields).encode(),
            headers={"content-type": "application/json"},
        )

    status, answer = start(maxWidth="wide")
    assert status == 400
    assert answer["code"] == "OPTION_INVALID"
    assert [(error["column"], error["code"]) for error in answer["errors"]] == [("maxWidth", "NOT_AN_INTEGER")]

    status, answer = start(format="webp", maxHeight=300)
    assert status == 201, answer
    status, result = pipeline.api("GET", f"/api/v1/status/{answer['requestId']}")
    assert result["options"] == {
        "format": "webp",
        "quality": 50,
        "maxWidth": None,
        "maxHeight": 300,
        "background": "#ffffff",
    }
