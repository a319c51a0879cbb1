"""The reconciler's backlog rule over in-memory ports: a stalled request's work is lost only when the queue that
should hold it holds fewer messages than it. Images its chunks have not sent yet are the chunks queue's work
(queued, in flight, or stopped for time and re-queued), never re-queued as images; a lost chunk is re-sent even
when the images queue is busy, and resumes from its progress; one that stays lost still ends its request."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from ips.expansion import service as expansion
from ips.expansion.service import expand_chunk
from ips.intake.fakes import refuse_nothing
from ips.intake.service import accept_csv
from ips.reconcile.fakes import ReconcileFakes
from ips.reconcile.service import reconcile
from ips.shared.messages import parse_task, redrive_count
from ips.shared.model import ChunkTask, ImageTask, RequestStatus

HEADER = "S. No.,Product Name,Input Image Urls\n"
ROWS, URLS, CHUNK_IMAGES = 6, 2, 4  # 12 images in 3 chunks of 2 rows (4 images) each: rows 2-3, 4-5, 6-7


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> ReconcileFakes:
    monkeypatch.setattr(expansion, "SEND_GROUP", 2)  # a chunk stopped for time has sent half its images
    world = ReconcileFakes()
    world.intake_policy = dataclasses.replace(world.intake_policy, chunk_images=CHUNK_IMAGES)
    world.reconcile_policy = dataclasses.replace(world.reconcile_policy, stall_after_s=0)
    return world


def accept(fakes: ReconcileFakes) -> str:
    lines = "".join(
        f'{n},P{n},"{",".join(f"http://127.0.0.1:9/{n}-{i}.jpg" for i in range(URLS))}"\n' for n in range(1, ROWS + 1)
    )
    accepted = accept_csv((HEADER + lines).encode(), "tenant-a", None, fakes.intake(), check_url=refuse_nothing)
    assert len(fakes.chunks_queue.sent) == 3
    return accepted.request_id


def expand_next(fakes: ReconcileFakes, *, out_of_time: bool = False) -> ChunkTask:
    """The expand function takes the next chunk off its queue; out of time, it sends one group and re-queues it."""
    task = parse_task(fakes.chunks_queue.sent.pop(0))
    assert isinstance(task, ChunkTask)
    expand_chunk(task, fakes.chunks(), time_left=(lambda: 0.0) if out_of_time else (lambda: float("inf")))
    return task


def images(bodies: list[str]) -> set[tuple[int, int]]:
    return {(task.row, task.index) for task in map(parse_task, bodies) if isinstance(task, ImageTask)}


def chunk_rows(bodies: list[str]) -> list[int]:
    return [task.chunk.first_row for task in map(parse_task, bodies) if isinstance(task, ChunkTask)]


def partly_expanded(fakes: ReconcileFakes) -> str:
    """Rows 2-3 stopped for time after one group (images (2,0), (2,1) sent; its chunk back on the chunks queue),
    the other two chunks expanded: 10 image messages and 1 chunk queued, 12 images pending in the catalog."""
    request_id = accept(fakes)
    expand_next(fakes, out_of_time=True)
    expand_next(fakes)
    expand_next(fakes)
    assert chunk_rows(fakes.chunks_queue.sent) == [2]
    assert len(fakes.queue.sent) == 10
    return request_id


def test_chunks_queued_or_in_flight_are_not_lost_work(fakes: ReconcileFakes) -> None:
    accept(fakes)  # 3 chunks queued, nothing expanded yet, the images queue empty
    report = reconcile(fakes.reconcile())
    assert (report.waiting, report.stalled, report.requeued) == (1, 0, 0)
    assert len(fakes.chunks_queue.sent) == 3 and fakes.queue.sent == []  # before: its 3 chunks sent a second time


def test_images_a_chunk_has_not_sent_yet_are_not_counted_against_the_images_queue(fakes: ReconcileFakes) -> None:
    partly_expanded(fakes)
    report = reconcile(fakes.reconcile())
    # 10 image messages for the 10 sent, 1 chunk message for the chunk not done: all of it may be waiting.
    assert (report.waiting, report.stalled) == (1, 0)  # before: 10 < 12 pending, all 12 re-queued
    assert len(fakes.queue.sent) == 10 and len(fakes.chunks_queue.sent) == 1


def test_lost_image_messages_are_requeued_but_not_the_images_their_waiting_chunk_will_send(
    fakes: ReconcileFakes,
) -> None:
    partly_expanded(fakes)
    lost = images(fakes.queue.sent)
    fakes.queue.sent.clear()  # the image messages are lost; the chunk still waits
    report = reconcile(fakes.reconcile())
    assert (report.stalled, report.requeued) == (1, 10)
    assert images(fakes.queue.sent) == lost and len(fakes.queue.sent) == 10  # not (3,0), (3,1): the chunk's
    assert chunk_rows(fakes.chunks_queue.sent) == [2]  # not re-sent: it is queued
    expand_next(fakes)  # it resumes where it stopped
    assert len(fakes.queue.sent) == 12 and images(fakes.queue.sent) == {(r, i) for r in range(2, 8) for i in (0, 1)}


@pytest.mark.parametrize("started", [False, True], ids=["never-started", "stopped-for-time"])
def test_a_lost_chunk_is_requeued_even_when_the_images_queue_is_busy(fakes: ReconcileFakes, started: bool) -> None:
    request_id = partly_expanded(fakes) if started else accept(fakes)
    if not started:
        expand_next(fakes)
        expand_next(fakes)  # rows 6-7 are left, unexpanded
    fakes.chunks_queue.sent.clear()  # the last chunk message is lost
    fakes.queue.others = 1000  # other requests' images keep the images queue deep
    report = reconcile(fakes.reconcile())
    # before: 1,000 image messages are "enough" for any of it, so the chunk was never re-sent (until its deadline)
    assert (report.stalled, report.requeued) == (1, 1)
    assert chunk_rows(fakes.chunks_queue.sent) == [2 if started else 6]
    sent_before = len(fakes.queue.sent)
    expand_next(fakes)
    assert len(fakes.queue.sent) - sent_before == (2 if started else 4)  # from its recorded progress on
    assert fakes.catalog.get(request_id).status is RequestStatus.PENDING


@pytest.mark.parametrize("end", ["dead-lettered", "deadline"])
def test_a_lost_chunk_behind_a_busy_chunks_queue_waits_but_its_request_still_ends(
    fakes: ReconcileFakes, end: str
) -> None:
    request_id = accept(fakes)
    expand_next(fakes)
    expand_next(fakes)
    [chunk] = fakes.chunks_queue.sent
    fakes.chunks_queue.sent.clear()
    fakes.chunks_queue.others = 5  # other requests' chunks: as far as the depth tells, it may be among them
    assert reconcile(fakes.reconcile()).waiting == 1
    assert fakes.chunks_queue.sent == []
    if end == "dead-lettered":
        fakes.dead_chunks.put(chunk)  # every delivery of it failed: put back while its request has time
        assert (reconcile(fakes.reconcile()).redriven, redrive_count(fakes.chunks_queue.sent[-1])) == (1, 1)
        redrives = fakes.reconcile_policy.dead_letter_redrives
        fakes.dead_chunks.put(json.dumps({**json.loads(chunk), "redrives": redrives}))
        assert reconcile(fakes.reconcile()).dead_chunks == 1  # put back enough times: its request ends
        expected = "DEAD_LETTERED"
    else:
        fakes.now = fakes.catalog.get(request_id).deadline_at + timedelta(seconds=1)
        fakes.rounds.mark_healthy(fakes.now)  # the rounds ran all along: no outage to stop the clock for
        assert reconcile(fakes.reconcile()).past_deadline == 1
        expected = "DEADLINE_EXCEEDED"  # rows 6-7 never became products
    record = fakes.catalog.get(request_id)
    assert (record.status, record.error["code"]) == (RequestStatus.FAILED, expected)
    assert request_id in fakes.ledger.failed_requests  # the counter's flip hands its webhook to notify


def test_a_request_waiting_round_after_round_has_its_file_planned_once(
    fakes: ReconcileFakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    partly_expanded(fakes)
    streamed: list[str] = []
    read = fakes.uploads.stream
    monkeypatch.setattr(fakes.uploads, "stream", lambda key: streamed.append(key) or read(key))
    for _ in range(3):
        assert reconcile(fakes.reconcile()).waiting == 1
    assert len(streamed) == 1  # a stored CSV never changes: its plan is kept between rounds
