"""Fairness between tenants (issue 9: one presigned call could queue millions of images): each API key has a
daily image quota and a cap on images in flight; over either, 429 IMAGE_QUOTA_EXCEEDED and nothing created."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from pymongo import MongoClient

from ips.shared.imaging.encode_cost import plan_encode
from ips.shared.model import ImageTask
from ips.shared.options import ImageOptions, OutputFormat
from ips.shared.quotas import work_units
from ips_adapters.dynamodb import DynamoQuotas
from localcloud.cloud import tenant_image_quotas
from localcloud.gateway import api_key_id
from localcloud.provision import requests_table
from localcloud.settings import KeyImageQuota, LocalCloudSettings
from tests.integration.conftest import API_KEY, Pipeline
from tests.integration.test_api_handlers import HEADER, multipart
from tests.integration.test_presigned_upload import post_to_s3, start_upload

OTHER_KEY = "integration-roomy-key"


def limit_key(monkeypatch: pytest.MonkeyPatch, per_day: int, in_flight: int) -> None:
    """API_KEY gets its own limits (as the local cloud's IMAGE_QUOTAS or the stack's tenantImageQuotas give)."""
    from ips_runtime.roots import reset_roots

    monkeypatch.setenv("TENANT_IMAGE_QUOTAS", tenant_image_quotas([KeyImageQuota(API_KEY, per_day, in_flight)]))
    reset_roots()


def upload(pipeline: Pipeline, images: int, image_url: str, api_key: str = API_KEY) -> tuple[int, dict]:
    urls = ",".join(f"{image_url}/missing-{n}.jpg" for n in range(images))
    body, headers = multipart(HEADER + f'1,Mug,"{urls}"\n')
    return pipeline.api("POST", "/api/v1/upload", body=body, headers=headers, api_key=api_key)


def created(pipeline: Pipeline, function_env: dict[str, str]) -> tuple[int, int, int]:
    """What exists: stored CSVs, request documents, queued messages."""
    objects = boto3.client("s3").list_objects_v2(Bucket=pipeline.resources.uploads_bucket).get("KeyCount", 0)
    database = MongoClient(function_env["MONGODB_URI"])[function_env["MONGODB_DATABASE"]]
    return objects, database["requests"].count_documents({}), pipeline.queued()


def finish(pipeline: Pipeline) -> None:
    pipeline.drain_queue()
    assert pipeline.notify()  # the completion (notify) ends the request


def test_local_cloud_image_quotas_are_by_key_id() -> None:
    assert json.loads(
        tenant_image_quotas(LocalCloudSettings.from_env({"IMAGE_QUOTAS": "a-key:10:5, b:key:1:2"}).image_quotas)
    ) == {
        api_key_id("a-key"): {"perDay": 10, "inFlight": 5},
        api_key_id("b:key"): {"perDay": 1, "inFlight": 2},
    }


def test_over_the_daily_quota_the_direct_route_answers_429_and_creates_nothing(
    pipeline: Pipeline, image_server, monkeypatch, function_env
) -> None:
    limit_key(monkeypatch, per_day=5, in_flight=100)
    status, _ = upload(pipeline, 3, image_server.url)
    assert status == 202
    finish(pipeline)  # ended: out of flight, but still counted for the day
    before = created(pipeline, function_env)
    status, answer = upload(pipeline, 3, image_server.url)
    assert (status, answer["code"]) == (429, "IMAGE_QUOTA_EXCEEDED")
    assert "5 images a day" in answer["message"]
    assert created(pipeline, function_env) == before
    assert upload(pipeline, 2, image_server.url)[0] == 202  # exactly up to the quota
    assert upload(pipeline, 3, image_server.url, api_key=OTHER_KEY)[0] == 202  # another key is not held back


def test_over_the_in_flight_cap_uploads_wait_until_earlier_requests_end(
    pipeline: Pipeline, image_server, monkeypatch, function_env
) -> None:
    limit_key(monkeypatch, per_day=1000, in_flight=4)
    assert upload(pipeline, 3, image_server.url)[0] == 202
    before = created(pipeline, function_env)
    status, answer = upload(pipeline, 2, image_server.url)
    assert (status, answer["code"]) == (429, "IMAGE_QUOTA_EXCEEDED")
    assert "4 images in flight" in answer["message"]
    assert created(pipeline, function_env) == before
    finish(pipeline)  # the first request ends: its 3 images leave flight, once
    assert upload(pipeline, 4, image_server.url)[0] == 202
    assert upload(pipeline, 1, image_server.url)[0] == 429


def test_presigned_uploads_are_refused_without_room_and_fail_at_ingestion_over_it(
    pipeline: Pipeline, image_server, monkeypatch, function_env, receiver
) -> None:
    limit_key(monkeypatch, per_day=4, in_flight=100)
    # The count is known only when the file lands: over the room left, the request ends FAILED with the code.
    slot = start_upload(pipeline, receiver.url)
    rows = "".join(f"{n},P{n},{image_server.url}/missing-{n}.jpg\n" for n in range(1, 6))
    post_to_s3(slot, (HEADER + rows).encode())
    assert pipeline.s3_runner().poll_once()
    _, status = pipeline.api("GET", f"/api/v1/status/{slot['requestId']}")
    assert (status["status"], status["error"]["code"], status["total"]) == ("FAILED", "IMAGE_QUOTA_EXCEEDED", 0)
    assert pipeline.queued() == 0
    assert pipeline.notify()  # the counter's OPEN -> FAILED flip hands it to notify
    [delivery] = receiver.wait(1, timeout=10)
    assert delivery["payload"]["data"]["error"]["code"] == "IMAGE_QUOTA_EXCEEDED"

    assert upload(pipeline, 4, image_server.url)[0] == 202  # the refused file counted nothing
    before = created(pipeline, function_env)
    status, answer = pipeline.api(
        "POST", "/api/v1/uploads", body=b"{}", headers={"content-type": "application/json"}
    )  # no room left today: no slot at all
    assert (status, answer["code"]) == (429, "IMAGE_QUOTA_EXCEEDED")
    assert created(pipeline, function_env) == before


def test_a_heavy_images_work_counts_against_the_daily_quota(
    pipeline: Pipeline, image_server, monkeypatch, function_env
) -> None:
    limit_key(monkeypatch, per_day=10, in_flight=100)
    options = ImageOptions(format=OutputFormat.AVIF, quality=95, maxWidth=1000)
    units = work_units(plan_encode((1411, 1411), options, alpha=False, max_seconds=float("inf")).seconds)
    assert units >= 2  # sk_retina.jpg (1411 x 1411) as a 1000 px AVIF at quality 95 is heavier than one image
    body, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_retina.jpg\n")
    query = "format=avif&quality=95&maxWidth=1000"
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers, query=query)
    assert status == 202, answer
    finish(pipeline)
    _, document = pipeline.api("GET", f"/api/v1/status/{answer['requestId']}")
    assert (document["status"], document["succeeded"], document["options"]["format"]) == ("COMPLETED", 1, "avif")
    room = 10 - units  # the image reserved one at intake, its processing charged the rest
    status, refused = upload(pipeline, room + 1, image_server.url)
    assert (status, refused["code"]) == (429, "IMAGE_QUOTA_EXCEEDED")
    assert upload(pipeline, room, image_server.url)[0] == 202


def test_work_is_charged_once_per_image_and_only_within_the_quota(dynamodb_local_endpoint: str) -> None:
    """On DynamoDB Local: the charge's transaction and its cancellation reasons."""
    client = boto3.client("dynamodb", endpoint_url=dynamodb_local_endpoint)
    table = f"quotas-{uuid.uuid4().hex[:8]}"
    requests_table(table, client)
    quotas, day = DynamoQuotas(client, table), "2026-12-01"
    heavy, other = (ImageTask("req-1", 2, index, f"https://a.example/{index}.jpg", "salt", "t") for index in (0, 1))
    assert quotas.reserve("t", "req-1", 2, 10, 100, day) is None
    assert quotas.charge(heavy, 4, 10, day)
    assert quotas.charge(heavy, 4, 10, day)  # a redelivery: charged before, nothing added
    assert quotas.usage("t", day) == (6, 2)
    assert not quotas.charge(other, 5, 10, day)  # 11 of 10: refused, nothing charged
    assert quotas.usage("t", day) == (6, 2)
    assert quotas.charge(other, 4, 10, day) and quotas.usage("t", day) == (10, 2)
    assert quotas.reserve("t", "req-2", 1, 10, 100, day) == "perDay"  # the work counts against later requests
    assert quotas.usage("u", day) == (0, 0)
    quotas.release("req-1")
    assert quotas.usage("t", day) == (10, 0)  # in flight is a count of images: the work leaves it with them
