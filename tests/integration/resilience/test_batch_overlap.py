"""The process function runs a batch as one unit of I/O (ips.processing.service.run_batch): each image's S3 put beside
the next one's compression, then one MongoDB write and one DynamoDB count for the batch. These tests pin what that
must not change: each record of a batch is reported on its own (powertools' partial batch response), every image
is counted exactly once, and the overlap is real.

One batch is delivered by hand (the chunk's image messages received together, handed to the function at once),
with faults at the ports for chosen images only; then the pipeline settles as AWS would run it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ips.shared.fetching import FetchError
from ips.shared.model import ImageTask
from ips_runtime.adapters import Adapters
from ips_runtime.roots import overriding_roots
from tests.integration.conftest import Pipeline
from tests.integration.resilience.conftest import assert_consistent, settle, upload
from tests.integration.resilience.test_faults import mixed_csv

# Bounds a wait that only the sequential code would run into (then the test fails); never a timing assertion.
PATIENCE_S = 20


class FailsFor:
    """The real adapter, except that `method` raises `error` the first `times` calls whose `key_of(args)` is
    `key` (one image's S3 key, URL, ...): a fault for one image of the batch, not the others."""

    def __init__(
        self, real: Any, method: str, key_of: Callable[..., str], key: str, error: BaseException, times: int = 1
    ) -> None:
        self._real, self._method, self._key_of, self._key, self._error = real, method, key_of, key, error
        self.remaining = times
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name != self._method:
            return attribute

        def failing(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                fail = self.remaining > 0 and self._key_of(*args) == self._key
                self.remaining -= fail
            if fail:
                raise self._error
            return attribute(*args, **kwargs)

        return failing


class SecondPutGate:
    """The processed store, except that the first put waits until a second put has begun. Sequential code (each
    image stored, recorded and counted before the next is compressed) can never get there: the wait runs out."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._puts = 0
        self._lock = threading.Lock()
        self._second = threading.Event()
        self.overlapped: bool | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self._puts += 1
            first = self._puts == 1
        if first:
            self.overlapped = self._second.wait(PATIENCE_S)
        else:
            self._second.set()
        self._real.put(key, data, content_type)


def with_adapters(**wrappers: Callable[[Any], Any]) -> Adapters:
    """Adapters from the environment, each named one wrapped (install them with overriding_roots)."""

    def wrap(name: str, adapter: Any) -> Any:
        return wrappers[name](adapter) if name in wrappers else adapter

    adapters = Adapters.from_env(wrap)
    for name in wrappers:
        getattr(adapters, name)  # built now, so every root uses the one the test holds
    return adapters


def one_batch(pipeline: Pipeline, count: int) -> list[dict[str, Any]]:
    """Expand the request's chunk, then receive its `count` image messages together (as one batch)."""
    pipeline.chunk_runner().poll_once()
    sqs, messages = boto3.client("sqs"), []
    while len(messages) < count:
        received = sqs.receive_message(
            QueueUrl=pipeline.resources.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        )
        messages += received.get("Messages", [])
    return messages


def invoke(pipeline: Pipeline, messages: list[dict[str, Any]]) -> set[str]:
    """Deliver the messages as one batch, as the event source mapping would; the message IDs it reports failed.
    Like the mapping, delete what succeeded and leave the failures to come back after the visibility timeout."""
    runner = pipeline.sqs_runner()
    result = pipeline.functions["process"].invoke({"Records": [runner._record(message) for message in messages]})
    failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
    for message in messages:
        if message["MessageId"] not in failed:
            boto3.client("sqs").delete_message(
                QueueUrl=pipeline.resources.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    return failed


def task_of(message: dict[str, Any]) -> ImageTask:
    from ips.shared.messages import parse_task

    task = parse_task(message["Body"])
    assert isinstance(task, ImageTask)
    return task


def test_a_later_image_is_stored_while_an_earlier_one_is_still_being_stored(
    pipeline: Pipeline, image_server, receiver
) -> None:
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    messages = one_batch(pipeline, 4)
    gates: list[SecondPutGate] = []
    adapters = with_adapters(processed=lambda real: gates.append(SecondPutGate(real)) or gates[-1])
    with overriding_roots(adapters):
        failed = invoke(pipeline, messages)
    [gate] = gates
    assert gate.overlapped is True, "the second image was stored only after the first one's finish"
    assert failed == set()
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)


def test_each_record_of_an_overlapped_batch_is_reported_on_its_own(pipeline: Pipeline, image_server, receiver) -> None:
    """In one batch: one image's S3 put fails (on the store pool), another's source fails transiently (RetryLater,
    before its compression), a third is a 404 (failed for good: a success for its record). Exactly the first two
    are reported failed; after their redelivery every image is counted once."""
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    messages = one_batch(pipeline, 4)
    by_name = {task_of(message).url.rsplit("/", 1)[1]: message for message in messages}
    stored, fetched = task_of(by_name["sk_rocket.jpg"]), task_of(by_name["sk_coffee.png"])
    refused = ClientError({"Error": {"Code": "ServiceUnavailable"}}, "PutObject")
    unavailable = FetchError("HTTP_STATUS", "the source answered 503", permanent=False)
    faults: dict[str, FailsFor] = {}

    def failing_put(real: Any) -> FailsFor:
        faults["processed"] = FailsFor(real, "put", lambda key, *_: key, stored.output_key, refused)
        return faults["processed"]

    def failing_fetch(real: Any) -> FailsFor:
        faults["fetcher"] = FailsFor(real, "fetch", lambda url, *_: url, fetched.url, unavailable)
        return faults["fetcher"]

    with overriding_roots(with_adapters(processed=failing_put, fetcher=failing_fetch)):
        failed = invoke(pipeline, messages)
    processed, fetcher = faults["processed"], faults["fetcher"]
    assert (processed.remaining, fetcher.remaining) == (0, 0), "a fault was never hit"
    assert failed == {by_name["sk_rocket.jpg"]["MessageId"], by_name["sk_coffee.png"]["MessageId"]}
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)
    assert pipeline.queued(pipeline.resources.dead_letter_url) == 0
    assert len(receiver.wait(1, timeout=10)) == 1


def test_the_same_image_twice_in_one_batch_is_counted_once(pipeline: Pipeline, image_server, receiver) -> None:
    request_id = upload(pipeline, mixed_csv(image_server.url), receiver.url)
    messages = one_batch(pipeline, 4)
    sqs = boto3.client("sqs")
    for message in messages:  # a duplicate delivery of every image, in the same batch as the original
        sqs.send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=message["Body"])
    while len(messages) < 8:
        received = sqs.receive_message(
            QueueUrl=pipeline.resources.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        )
        messages += received.get("Messages", [])
    assert invoke(pipeline, messages) == set()
    assert pipeline.queued() == 0
    status = settle(pipeline, request_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 3, 1)
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1
