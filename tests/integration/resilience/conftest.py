"""Fixtures for the fault and hostile-input suites: the deployed topology, but retries come back after a second
(visibility timeout 1 s, 3 receives before the DLQ) so recovery can be watched in a test."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.topology import TOPOLOGY
from ips.shared.model import ImageStatus
from ips_runtime.adapters import Adapters
from ips_runtime.roots import reset_roots
from localcloud.lambda_host import LocalFunction
from localcloud.provision import Resources, provision
from tests.integration.conftest import Pipeline, atomic_dynamodb
from tests.integration.test_api_handlers import multipart

MAX_RECEIVES = 3
# Retries come back after a second instead of the deployed 6 minutes.
FAST_TOPOLOGY = dataclasses.replace(
    TOPOLOGY,
    images_queue=dataclasses.replace(TOPOLOGY.images_queue, visibility_timeout_s=1, max_receive_count=MAX_RECEIVES),
    chunks_queue=dataclasses.replace(TOPOLOGY.chunks_queue, visibility_timeout_s=1, max_receive_count=MAX_RECEIVES),
    webhooks_queue=dataclasses.replace(TOPOLOGY.webhooks_queue, visibility_timeout_s=1, max_receive_count=MAX_RECEIVES),
)


@pytest.fixture
def aws() -> Iterator[Resources]:
    with mock_aws(), atomic_dynamodb():
        yield provision(FAST_TOPOLOGY, boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb"))


@pytest.fixture
def pipeline(aws: Resources, function_env: dict[str, str], receiver, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    monkeypatch.setenv("MAX_RECEIVE_COUNT", str(MAX_RECEIVES))
    reset_roots()
    return Pipeline(aws, {spec.name: LocalFunction(spec) for spec in FAST_TOPOLOGY.functions})


class Faulty:
    """The real adapter, except that the first `times` calls of `method` raise `error`: before doing anything, or
    with `after`, once the call went through (a crash between that step and the next)."""

    def __init__(self, real: Any, method: str, error: BaseException, times: int = 1, *, after: bool = False) -> None:
        self._real, self._method, self._error, self.remaining, self._after = real, method, error, times, after
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name != self._method:
            return attribute

        def failing_first(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                fail = self.remaining > 0
                self.remaining -= fail
            if fail and not self._after:
                raise self._error
            result = attribute(*args, **kwargs)
            if fail:
                raise self._error
            return result

        return failing_first


def with_fault(
    backend: str, method: str, error: BaseException, times: int = 1, *, after: bool = False
) -> tuple[Adapters, Faulty]:
    """Adapters from the environment, `backend` wrapped in a Faulty (install them with overriding_roots)."""
    faults: list[Faulty] = []

    def wrap(name: str, adapter: Any) -> Any:
        if name != backend:
            return adapter
        faults.append(Faulty(adapter, method, error, times, after=after))
        return faults[-1]

    adapters = Adapters.from_env(wrap)
    getattr(adapters, backend)  # built now, so the test holds the one every root uses
    return adapters, faults[0]


def upload(pipeline: Pipeline, csv_text: str, webhook: str) -> str:
    body, headers = multipart(csv_text, webhook)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 202, answer
    return answer["requestId"]


def settle(pipeline: Pipeline, request_id: str, timeout: float = 30) -> dict[str, Any]:
    """Run the event sources as Lambda would until the request ends and nothing is left in flight, and its
    webhook's wake-ups due by then have run (a retry scheduled for later is left in its queue)."""
    chunks, sqs, stream = pipeline.chunk_runner(), pipeline.sqs_runner(), pipeline.stream_runner()
    chunks_url = pipeline.resources.chunks_queue_url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worked = chunks.poll_once()
        worked = sqs.poll_once() or worked
        stream.poll_once()
        pipeline.send_webhooks()
        _, status = pipeline.api("GET", f"/api/v1/status/{request_id}")
        ended = status["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED")
        if ended and pipeline.queued() == 0 and pipeline.queued(chunks_url) == 0:
            return status
        if not worked:
            time.sleep(0.2)
    raise AssertionError(f"request {request_id} did not settle: {status['status']}, queued {pipeline.queued()}")


def assert_consistent(
    pipeline: Pipeline, request_id: str, status: dict[str, Any], *, orphans_allowed: bool = False
) -> None:
    """`orphans_allowed`: images stored before a write that failed for good (they are never linked to)."""
    adapters = Adapters.from_env()
    images = [image for product in adapters.catalog.products(request_id) for image in product.images]
    assert images and all(image is not None for image in images), "an image without a terminal state"
    succeeded = sum(image.status is ImageStatus.SUCCEEDED for image in images)
    counts = adapters.ledger.counts(request_id)
    assert counts is not None
    assert (counts.total, counts.succeeded, counts.failed) == (len(images), succeeded, len(images) - succeeded)
    assert (status["total"], status["succeeded"], status["failed"]) == (counts.total, counts.succeeded, counts.failed)
    stored = {
        item["Key"]
        for item in boto3.client("s3")
        .list_objects_v2(Bucket=pipeline.resources.processed_bucket, Prefix=f"{request_id}/")
        .get("Contents", [])
    }
    expected = {image.output_url.split("/assets/", 1)[1] for image in images if image.status is ImageStatus.SUCCEEDED}
    # Only images: the output CSV is in the private uploads bucket.
    if orphans_allowed:
        assert stored >= expected
    else:
        assert stored == expected
    boto3.client("s3").head_object(Bucket=pipeline.resources.uploads_bucket, Key=f"{request_id}/output.csv")
