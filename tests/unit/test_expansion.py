"""Chunk expansion (ips.expansion) over in-memory ports: what a delivery sends, what a redelivery does not send
again, when it stops for time and re-queues the rest, and a chunk failing every delivery (left to its DLQ)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import pytest

from ips.context import PRESIGNED_CSV_LIMITS
from ips.csv_input import byte_lines, plan_csv
from ips.expansion import SEND_GROUP, ChunkPorts, expand_chunk
from ips.model import ChunkTask
from tests.unit.fakes import MemoryChunkProgress

HEADER = "S. No.,Product Name,Input Image Urls\n"
KEY = "req/input.csv"


class MemoryUploads:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    def get_range(self, key: str, start: int, end: int) -> bytes:
        assert key == KEY
        self.reads += 1
        return self.data[start:end]


class MemoryQueue:
    """Records what was sent; `fail_after` sends succeed, then each one raises (a crash mid-chunk)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.bodies: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def send(self, bodies: Sequence[str]) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise ConnectionError("the invocation was killed")
        self.calls += 1
        self.bodies.extend(bodies)


class MemoryCatalog:
    def __init__(self) -> None:
        self.added: list[int] = []
        self.failed: list[str] = []

    def add_products(self, request_id: str, products) -> None:
        self.added.extend(product.row for product in products)

    def mark_failed(self, request_id: str, *args, **kwargs) -> bool:
        self.failed.append(request_id)
        return True


def chunk_of(rows: int, urls: int, chunk_images: int = 1000) -> tuple[bytes, ChunkTask]:
    lines = "".join(
        f'{n},P{n},"{",".join(f"http://127.0.0.1:9/{n}-{i}.jpg" for i in range(urls))}"\n' for n in range(1, rows + 1)
    )
    data = (HEADER + lines).encode()
    plan = plan_csv(byte_lines([data]), chunk_images=chunk_images)
    return data, ChunkTask("req", KEY, plan.columns, plan.chunks[0], "salt")


def ports_of(data: bytes, *, images: MemoryQueue | None = None) -> tuple[ChunkPorts, dict]:
    ports = {
        "uploads": MemoryUploads(data),
        "queue": images or MemoryQueue(),
        "chunks": MemoryQueue(),
        "progress": MemoryChunkProgress(),
        "catalog": MemoryCatalog(),
    }
    return ChunkPorts(limits=PRESIGNED_CSV_LIMITS, **ports), ports  # type: ignore[arg-type]


def sent_slots(bodies: list[str]) -> Counter:
    return Counter((json.loads(body)["row"], json.loads(body)["index"]) for body in bodies)


def test_a_chunk_sends_each_image_once_in_groups_and_records_its_progress() -> None:
    data, task = chunk_of(rows=50, urls=5)  # 250 images
    chunk_ports, ports = ports_of(data)
    expansion = expand_chunk(task, chunk_ports)
    assert (expansion.resumed_at, expansion.sent, expansion.remaining) == (0, 250, 0)
    assert sent_slots(ports["queue"].bodies) == {(row, index): 1 for row in range(2, 52) for index in range(5)}
    assert ports["queue"].calls == 3  # groups of SEND_GROUP: 100, 100, 50
    assert ports["progress"].marks == {("req", 2): 250}
    assert ports["catalog"].added == list(range(2, 52))


def test_a_redelivered_chunk_goes_on_from_its_progress_without_resending() -> None:
    data, task = chunk_of(rows=50, urls=5)
    images = MemoryQueue(fail_after=2)  # killed after two groups were sent and recorded
    chunk_ports, ports = ports_of(data, images=images)
    with pytest.raises(ConnectionError):
        expand_chunk(task, chunk_ports)
    assert ports["progress"].marks == {("req", 2): 2 * SEND_GROUP}

    images.fail_after = None  # the redelivery
    expansion = expand_chunk(task, chunk_ports)
    assert (expansion.resumed_at, expansion.sent, expansion.remaining) == (200, 50, 0)
    assert sent_slots(images.bodies) == {(row, index): 1 for row in range(2, 52) for index in range(5)}
    assert ports["catalog"].added == list(range(2, 52))  # products were added once, before any image

    # A third delivery (a duplicate of the message) finds the chunk done: nothing read, nothing sent.
    reads = ports["uploads"].reads
    assert expand_chunk(task, chunk_ports).sent == 0
    assert ports["uploads"].reads == reads and len(images.bodies) == 250


def test_out_of_time_it_stops_between_groups_and_requeues_the_rest() -> None:
    data, task = chunk_of(rows=100, urls=5)  # 500 images
    chunk_ports, ports = ports_of(data)
    clock = iter([5.0, 0.0])  # time left before the second group, then none before the third
    expansion = expand_chunk(task, chunk_ports, time_left=lambda: next(clock))
    assert (expansion.sent, expansion.remaining, expansion.requeued) == (200, 300, True)
    [again] = ports["chunks"].bodies
    assert again == task.to_message()  # the same chunk: its next delivery resumes from the recorded progress

    rest = expand_chunk(task, chunk_ports)
    assert (rest.resumed_at, rest.sent, rest.remaining) == (200, 300, 0)
    assert sent_slots(ports["queue"].bodies) == {(row, index): 1 for row in range(2, 102) for index in range(5)}


def test_out_of_time_from_the_start_it_still_sends_a_group_so_a_chunk_always_moves() -> None:
    data, task = chunk_of(rows=100, urls=5)
    chunk_ports, ports = ports_of(data)
    expansion = expand_chunk(task, chunk_ports, time_left=lambda: 0.0)
    assert (expansion.sent, expansion.remaining) == (SEND_GROUP, 500 - SEND_GROUP)
    assert len(ports["chunks"].bodies) == 1


def test_a_chunk_failing_every_delivery_never_ends_its_request_itself() -> None:
    """Its last delivery raises like the others: the dead-letter queue, where the reconciler puts it back while the
    request has time (a store outage pauses the work), decides. Before, the last delivery ended the request
    FAILED, FAN_OUT_FAILED, even when only a store was down for a while."""
    data, task = chunk_of(rows=3, urls=2)
    chunk_ports, ports = ports_of(data, images=MemoryQueue(fail_after=0))
    for _ in range(5):
        with pytest.raises(ConnectionError):
            expand_chunk(task, chunk_ports)
    assert ports["catalog"].failed == []
