"""Chunk expansion (ips.expansion.service) over in-memory ports: what a delivery sends, what a redelivery does not send
again, when it stops for time and re-queues the rest, and a chunk failing every delivery (left to its DLQ)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ips.expansion.fakes import ExpansionFakes
from ips.expansion.service import SEND_GROUP, expand_chunk
from ips.shared.csv_input import byte_lines, plan_csv
from ips.shared.model import ChunkTask

HEADER = "S. No.,Product Name,Input Image Urls\n"
KEY = "req/input.csv"


def chunk_of(rows: int, urls: int, chunk_images: int = 1000) -> tuple[ExpansionFakes, ChunkTask]:
    """A request whose CSV (in the uploads bucket) is `rows` rows of `urls` URLs, and its first chunk."""
    lines = "".join(
        f'{n},P{n},"{",".join(f"http://127.0.0.1:9/{n}-{i}.jpg" for i in range(urls))}"\n' for n in range(1, rows + 1)
    )
    data = (HEADER + lines).encode()
    plan = plan_csv(byte_lines([data]), chunk_images=chunk_images)
    fakes = ExpansionFakes()
    fakes.uploads.put(KEY, data, "text/csv")
    fakes.open_request("req")
    return fakes, ChunkTask("req", KEY, plan.columns, plan.chunks[0], "salt")


def sent_slots(bodies: list[str]) -> Counter:
    return Counter((json.loads(body)["row"], json.loads(body)["index"]) for body in bodies)


def added_rows(fakes: ExpansionFakes) -> list[int]:
    return sorted(fakes.catalog.rows.get("req", {}))


def test_a_chunk_sends_each_image_once_in_groups_and_records_its_progress() -> None:
    fakes, task = chunk_of(rows=50, urls=5)  # 250 images
    expansion = expand_chunk(task, fakes.chunks())
    assert (expansion.resumed_at, expansion.sent, expansion.remaining) == (0, 250, 0)
    assert sent_slots(fakes.queue.sent) == {(row, index): 1 for row in range(2, 52) for index in range(5)}
    assert fakes.queue.sends == 3  # groups of SEND_GROUP: 100, 100, 50
    assert fakes.chunk_progress.marks == {("req", 2): 250}
    assert added_rows(fakes) == list(range(2, 52)) and fakes.catalog.product_writes == 1


def test_a_redelivered_chunk_goes_on_from_its_progress_without_resending() -> None:
    fakes, task = chunk_of(rows=50, urls=5)
    fakes.queue.fail_after = 2  # killed after two groups were sent and recorded
    with pytest.raises(ConnectionError):
        expand_chunk(task, fakes.chunks())
    assert fakes.chunk_progress.marks == {("req", 2): 2 * SEND_GROUP}

    fakes.queue.fail_after = None  # the redelivery
    expansion = expand_chunk(task, fakes.chunks())
    assert (expansion.resumed_at, expansion.sent, expansion.remaining) == (200, 50, 0)
    assert sent_slots(fakes.queue.sent) == {(row, index): 1 for row in range(2, 52) for index in range(5)}
    # products were added once, before any image
    assert added_rows(fakes) == list(range(2, 52)) and fakes.catalog.product_writes == 1

    # A third delivery (a duplicate of the message) finds the chunk done: nothing read, nothing sent.
    reads = fakes.uploads.reads
    assert expand_chunk(task, fakes.chunks()).sent == 0
    assert fakes.uploads.reads == reads and len(fakes.queue.sent) == 250


def test_out_of_time_it_stops_between_groups_and_requeues_the_rest() -> None:
    fakes, task = chunk_of(rows=100, urls=5)  # 500 images
    clock = iter([5.0, 0.0])  # time left before the second group, then none before the third
    expansion = expand_chunk(task, fakes.chunks(), time_left=lambda: next(clock))
    assert (expansion.sent, expansion.remaining, expansion.requeued) == (200, 300, True)
    [again] = fakes.chunks_queue.sent
    assert again == task.to_message()  # the same chunk: its next delivery resumes from the recorded progress

    rest = expand_chunk(task, fakes.chunks())
    assert (rest.resumed_at, rest.sent, rest.remaining) == (200, 300, 0)
    assert sent_slots(fakes.queue.sent) == {(row, index): 1 for row in range(2, 102) for index in range(5)}


def test_out_of_time_from_the_start_it_still_sends_a_group_so_a_chunk_always_moves() -> None:
    fakes, task = chunk_of(rows=100, urls=5)
    expansion = expand_chunk(task, fakes.chunks(), time_left=lambda: 0.0)
    assert (expansion.sent, expansion.remaining) == (SEND_GROUP, 500 - SEND_GROUP)
    assert len(fakes.chunks_queue.sent) == 1


def test_a_chunk_failing_every_delivery_never_ends_its_request_itself() -> None:
    """Its last delivery raises like the others: the dead-letter queue, where the reconciler puts it back while the
    request has time (a store outage pauses the work), decides. Before, the last delivery ended the request
    FAILED, FAN_OUT_FAILED, even when only a store was down for a while."""
    fakes, task = chunk_of(rows=3, urls=2)
    fakes.queue.fail_after = 0
    for _ in range(5):
        with pytest.raises(ConnectionError):
            expand_chunk(task, fakes.chunks())
    record = fakes.catalog.get("req")
    assert record is not None and not record.status.is_final and fakes.ledger.failed_requests == set()
