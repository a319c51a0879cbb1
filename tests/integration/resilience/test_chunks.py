"""The fan-out on its own queue: a chunk whose invocation runs out of time, or is killed, midway goes on from what
it recorded as sent; no image message is sent twice, and the request ends as if nothing had happened."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import boto3

from infra.topology import TOPOLOGY
from ips.expansion.service import SEND_GROUP
from ips_runtime.adapters import Adapters
from ips_runtime.roots import overriding_roots
from localcloud.lambda_host import LocalFunction
from localcloud.runners import SqsRunner
from tests.integration.conftest import Pipeline
from tests.integration.resilience.conftest import assert_consistent, settle, upload
from tests.integration.test_api_handlers import HEADER


def rows_csv(image_url: str, rows: int, urls: int) -> str:
    return HEADER + "".join(
        f'{n},P{n},"{",".join(f"{image_url}/missing-{n}-{i}.jpg" for i in range(urls))}"\n' for n in range(1, rows + 1)
    )


def queued_images(pipeline: Pipeline) -> Counter:
    """Every image message on the images queue, by (row, index): held invisible while counted, then let go."""
    sqs, url, found, held = boto3.client("sqs"), pipeline.resources.queue_url, Counter(), []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages"):
        found.update((json.loads(m["Body"])["row"], json.loads(m["Body"])["index"]) for m in messages)
        held += [m["ReceiptHandle"] for m in messages]
    for start in range(0, len(held), 10):
        entries = [
            {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for n, handle in enumerate(held[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    return found


class KilledAfter:
    """The images queue, except that the invocation "dies" (a timeout kill) at its send number `kill_at`."""

    def __init__(self, real: Any, kill_at: int) -> None:
        self._real, self.kill_at, self.sends = real, kill_at, 0
        self._lock = threading.Lock()

    def send(self, bodies: Sequence[str]) -> None:
        with self._lock:
            self.sends += 1
            killed = self.sends == self.kill_at
        if killed:
            raise TimeoutError("Task timed out mid-chunk")
        self._real.send(bodies)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def poll_until_quiet(runner: SqsRunner, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
    """Deliver until nothing has come for `quiet_s`, longer than the queue's 1 s visibility timeout: a message
    held by a failed delivery has come back by then. Receives, not the queue's approximate counts, decide."""
    deadline = time.monotonic() + timeout_s
    last_delivery = time.monotonic()
    while time.monotonic() - last_delivery < quiet_s:
        assert time.monotonic() < deadline, "the queue kept delivering"
        if runner.poll_once():
            last_delivery = time.monotonic()
        else:
            time.sleep(0.1)


def test_a_chunk_killed_midway_resumes_without_resending_and_its_request_completes(
    pipeline: Pipeline, image_server, receiver
) -> None:
    request_id = upload(pipeline, rows_csv(image_server.url, rows=21, urls=5), receiver.url)  # 105 images, 1 chunk

    def kill_midway(name: str, adapter: Any) -> Any:
        # The images queue: the first group goes out, the second never does.
        return KilledAfter(adapter, kill_at=2) if name == "queue" else adapter

    adapters = Adapters.from_env(kill_midway)
    progress = adapters.chunk_progress
    chunks = pipeline.chunk_runner()
    with overriding_roots(adapters):
        chunks.poll_once()  # the delivery that dies
        assert progress.sent(request_id, 2) == SEND_GROUP
        poll_until_quiet(chunks)  # the redelivery, after the visibility timeout
    queues = (
        pipeline.queued(pipeline.resources.chunks_queue_url),
        pipeline.queued(pipeline.resources.chunks_dead_letter_url),
    )
    assert pipeline.functions["expand"].invocations == 2, f"chunks queue and its DLQ hold {queues}"
    assert queues == (0, 0)
    assert progress.sent(request_id, 2) == 105
    # Each image sent once: the redelivery sent only what the dead one had not recorded as sent.
    assert queued_images(pipeline) == {(row, index): 1 for row in range(2, 23) for index in range(5)}
    status = settle(pipeline, request_id, timeout=120)
    assert (status["status"], status["total"], status["failed"]) == ("COMPLETED_WITH_ERRORS", 105, 105)
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1


def test_a_chunk_out_of_time_stops_requeues_the_rest_and_sends_each_image_once(
    aws, function_env, image_server, receiver
) -> None:
    # An expand function whose invocations have no time to spare: each sends one group, then re-queues the rest.
    short = dataclasses.replace(TOPOLOGY.function("expand"), timeout_s=15)
    functions = {spec.name: LocalFunction(spec) for spec in TOPOLOGY.functions} | {"expand": LocalFunction(short)}
    pipeline = Pipeline(aws, functions)
    request_id = upload(pipeline, rows_csv(image_server.url, rows=70, urls=5), receiver.url)  # 350 images, 1 chunk
    pipeline.drain_queue(pipeline.chunk_runner())
    assert functions["expand"].invocations == 4  # 100 + 100 + 100 + 50
    assert queued_images(pipeline) == {(row, index): 1 for row in range(2, 72) for index in range(5)}
    assert Adapters.from_env().chunk_progress.sent(request_id, 2) == 350


def test_what_is_no_chunk_on_the_chunks_queue_is_removed_at_once_and_the_chunks_go_on(
    pipeline: Pipeline, image_server, receiver
) -> None:
    from ips.shared.model import ImageTask

    request_id = upload(pipeline, rows_csv(image_server.url, rows=2, urls=1), receiver.url)
    resources, sqs = pipeline.resources, boto3.client("sqs")
    for body in ("{not json", ImageTask(request_id, 2, 0, f"{image_server.url}/x.jpg", "salt").to_message()):
        sqs.send_message(QueueUrl=resources.chunks_queue_url, MessageBody=body)
    pipeline.drain_queue(pipeline.chunk_runner())
    assert pipeline.functions["expand"].invocations == 3  # the chunk, and the two removed at their first delivery
    assert pipeline.queued(resources.chunks_queue_url) == 0 and pipeline.queued(resources.chunks_dead_letter_url) == 0
    assert queued_images(pipeline) == {(2, 0): 1, (3, 0): 1}  # only the chunk's own images
