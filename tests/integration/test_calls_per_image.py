"""What one batch of 10 images costs the services: the DynamoDB and MongoDB calls the process function makes,
counted where they leave the process (botocore's `before-call` events on every client the functions build, a
pymongo command listener), for a catalogue of distinct small images sent once and then sent again (reuse).

A batch is the unit of I/O (issue 17): one bulk write of its image records, one transaction for its counts and
one read of the counter, its reuse entries written together. Counts, not times: the numbers say how many round
trips an image costs, whatever the machine's load."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image
from pymongo import monitoring

from ips_runtime.roots import PROCESS, reset_roots
from localcloud.peers import ImageServer
from tests.integration.conftest import Pipeline
from tests.integration.resilience.test_batch_overlap import invoke
from tests.integration.test_api_handlers import HEADER, multipart

BATCH = 10
IMAGES = 2 * BATCH  # two batches: the first warms the container (its root, its cache of known requests)


class ServiceCalls(monitoring.CommandListener):
    """Counts AWS operations (by service), the entries of each SendMessageBatch, and MongoDB commands while
    `counting` is set (registered once per session: pymongo has no way to take a global listener out again)."""

    def __init__(self) -> None:
        self.counting = threading.Event()
        self.aws: dict[str, Counter[str]] = {}
        self.batch_entries: list[int] = []
        self.mongodb: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def dynamodb(self) -> Counter[str]:
        return self.aws.setdefault("dynamodb", Counter())

    def reset(self) -> None:
        with self._lock:
            self.aws.clear()
            self.batch_entries.clear()
            self.mongodb.clear()

    def aws_call(self, model: Any, **_: Any) -> None:
        if self.counting.is_set():
            with self._lock:
                self.aws.setdefault(model.service_model.service_name, Counter())[model.name] += 1

    def sqs_batch(self, params: dict[str, Any], **_: Any) -> None:
        if self.counting.is_set():
            with self._lock:
                self.batch_entries.append(len(params["Entries"]))

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.counting.is_set():
            with self._lock:
                self.mongodb[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


_CALLS = ServiceCalls()
monitoring.register(_CALLS)


@pytest.fixture
def calls(function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceCalls]:
    """Every client the functions build from now on reports its AWS calls (the default boto3 session's
    events are copied into each client it creates)."""
    session = boto3.session.Session()
    session.events.register("before-call", _CALLS.aws_call)
    session.events.register("before-parameter-build.sqs.SendMessageBatch", _CALLS.sqs_batch)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    reset_roots()
    _CALLS.reset()
    yield _CALLS
    _CALLS.counting.clear()


@pytest.fixture
def small_images(tmp_path: Path, function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server of IMAGES distinct 64x48 JPEGs (distinct bytes: nothing is reused on a first upload)."""
    for number in range(IMAGES):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (number * 11 % 256, 90, 200 - number)).save(buffer, "JPEG", quality=90)
        (tmp_path / f"{number}.jpg").write_bytes(buffer.getvalue())
    with ImageServer(tmp_path) as server:
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{server.origin}")
        reset_roots()
        yield server.url


def receive(pipeline: Pipeline, count: int) -> list[dict[str, Any]]:
    sqs, messages = boto3.client("sqs"), []
    while len(messages) < count:
        received = sqs.receive_message(
            QueueUrl=pipeline.resources.queue_url,
            MaxNumberOfMessages=min(10, count - len(messages)),
            MessageSystemAttributeNames=["All"],
        )
        messages += received.get("Messages", [])
    return messages


def second_batch_calls(pipeline: Pipeline, calls: ServiceCalls, images: str) -> tuple[Counter[str], Counter[str]]:
    """Upload a catalogue of IMAGES images, run its first batch, then count the calls of its second."""
    csv_text = HEADER + "".join(f"{row},P{row},{images}/{row - 1}.jpg\n" for row in range(1, IMAGES + 1))
    body, headers = multipart(csv_text)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 202, answer
    pipeline.chunk_runner().poll_once()
    PROCESS()  # the container's root, built before anything is counted (its cold start creates indexes)
    assert invoke(pipeline, receive(pipeline, BATCH)) == set()
    batch = receive(pipeline, BATCH)
    calls.reset()
    calls.counting.set()
    try:
        assert invoke(pipeline, batch) == set()
    finally:
        calls.counting.clear()
    _, status = pipeline.api("GET", f"/api/v1/status/{answer['requestId']}")
    assert (status["succeeded"], status["failed"]) == (IMAGES, 0), status
    return Counter(calls.dynamodb), Counter(calls.mongodb)


def test_a_batch_of_ten_new_images_costs_a_few_calls_not_a_few_per_image(
    pipeline: Pipeline, calls: ServiceCalls, small_images: str
) -> None:
    dynamodb, mongodb = second_batch_calls(pipeline, calls, small_images)
    print(f"\nnew images, per batch of {BATCH}: DynamoDB {dict(dynamodb)}, MongoDB {dict(mongodb)}")
    # One transaction (markers and the counter's shard), one read of the counter, and the completion flip
    # (this batch holds the request's last images).
    assert dynamodb.total() / BATCH <= 0.3, dynamodb
    # The reuse index asked by URL once; by content for the downloads finished whenever a compression needs it (a
    # few lookups: they come in 4 at a time per host, FETCH_PER_HOST); the image records and the reuse entries in
    # one write each. It was 32: a lookup by content, a record and a reuse entry per image.
    assert (mongodb["find"], mongodb["update"]) == (1, 2), mongodb
    assert mongodb["aggregate"] <= BATCH // 2, mongodb


def test_a_batch_of_ten_images_sent_again_costs_no_more(
    pipeline: Pipeline, calls: ServiceCalls, small_images: str
) -> None:
    second_batch_calls(pipeline, calls, small_images)
    dynamodb, mongodb = second_batch_calls(pipeline, calls, small_images)  # the same catalogue again: all reused
    print(f"\nreused images, per batch of {BATCH}: DynamoDB {dict(dynamodb)}, MongoDB {dict(mongodb)}")
    assert dynamodb.total() / BATCH <= 0.3, dynamodb
    # The reuse index asked by URL (a 304 needs no content lookup), the image records, the reuse entries.
    assert mongodb.total() / BATCH <= 0.3, mongodb


def test_a_chunk_of_a_thousand_images_is_one_insert_full_message_batches_and_ten_progress_writes(
    pipeline: Pipeline, calls: ServiceCalls, image_server: Any
) -> None:
    """The fan-out's I/O per chunk (issue 17, item 2): its products in one unordered insert_many, its image
    messages in SendMessageBatch calls of 10, its progress recorded once per group of 100 messages (10 calls),
    not per message."""
    rows = 1000
    csv_text = HEADER + "".join(f"{row},P{row},{image_server.url}/sk_rocket.jpg\n" for row in range(1, rows + 1))
    body, headers = multipart(csv_text)
    status, _ = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert status == 202
    calls.reset()
    calls.counting.set()
    try:
        assert pipeline.chunk_runner().poll_once()
    finally:
        calls.counting.clear()
    assert pipeline.queued() == rows
    assert calls.batch_entries == [10] * (rows // 10)
    assert calls.mongodb["insert"] == 1
    assert calls.dynamodb == Counter({"GetItem": 1, "UpdateItem": rows // 100}), calls.dynamodb
