"""The reconciler's rules over the fakes (ReconcileFakes), GIVEN/WHEN/THEN: every request ends, whatever was lost
or failed, and an outage only pauses the work.

Beside the rules tests/unit/test_reconcile_outages.py, test_reconcile_backlog.py and test_reconcile_rounds.py
hold (a store outage, deadlines moved by it, redrives of dead images, chunks and wake-ups, re-ingestion, the
backlog rule, the lease), these: a dead image's reason, dead letters that cannot be settled, a dead chunk put
back and its request completing, a FAILED request's lost wake-up, what a round does at a deadline, with a lost
completion, with counts cut short by a crash, with its time, its lease store and a broken request."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from ips.completion.service import complete_request, output_csv_key
from ips.expansion.service import expand_chunk
from ips.intake.fakes import refuse_nothing
from ips.intake.service import create_upload, incoming_key
from ips.processing.settle import settle
from ips.reconcile.fakes import ReconcileFakes
from ips.reconcile.service import DEAD_LETTERED, DEADLINE_EXCEEDED, dead_letter_reason, reconcile
from ips.shared.messages import parse_task, redrive_count, redriven
from ips.shared.model import ChunkTask, ImageOutcome, ImageStatus, ImageTask, RequestStatus, WebhookTask
from ips.shared.ports import ProductRecord
from tests.unit.usecases.given import HOOK, Refusing, accepted, expanded, image_tasks, products_csv, urls

INTERVAL = 300  # the reconciler's schedule, seconds


@pytest.fixture
def world() -> ReconcileFakes:
    fakes = ReconcileFakes()
    fakes.reconcile_policy = dataclasses.replace(fakes.reconcile_policy, interval_s=INTERVAL)
    return fakes


def stalled(world: ReconcileFakes) -> None:
    """The stall window passes with the rounds on schedule and nothing counted meanwhile."""
    later(world, world.reconcile_policy.stall_after_s)


def later(world: ReconcileFakes, seconds: float) -> None:
    """Time passes with the rounds running on schedule (the last one found the stores answering)."""
    world.now += timedelta(seconds=seconds)
    world.rounds.mark_healthy(world.now - timedelta(seconds=INTERVAL))


def past_its_deadline(world: ReconcileFakes, request_id: str) -> None:
    record = world.catalog.get(request_id)
    assert record is not None and record.deadline_at is not None
    later(world, (record.deadline_at - world.now).total_seconds() + 1)


def at_the_cap(world: ReconcileFakes, body: str) -> str:
    """A message put back on its queue as many times as dead letters may be."""
    for _ in range(world.reconcile_policy.dead_letter_redrives):
        body = redriven(body)
    return body


def succeeded(task: ImageTask) -> ImageOutcome:
    return ImageOutcome(
        ImageStatus.SUCCEEDED, output_url=f"http://assets.invalid/{task.output_key}", input_bytes=100, output_bytes=40
    )


def images_of(world: ReconcileFakes, request_id: str) -> list[ImageOutcome | None]:
    return [image for product in world.catalog.products(request_id) for image in product.images]


def status_of(world: ReconcileFakes, request_id: str) -> RequestStatus:
    record = world.catalog.get(request_id)
    assert record is not None
    return record.status


# -- dead letters ----------------------------------------------------------------------------------------------


def test_a_dead_image_put_back_enough_fails_dead_lettered_quoting_its_last_error(world: ReconcileFakes) -> None:
    # given: an image whose deliveries kept failing (a source answering 503), put back as often as allowed
    request_id = expanded(world, products_csv(urls("a.jpg")))
    [task] = image_tasks(world.queue.sent)
    world.catalog.note_failed_delivery(task, "HTTP_STATUS: HTTP 503 from the source")
    world.dead_images.put(at_the_cap(world, world.queue.sent.pop()))
    # when: a round drains the images' dead-letter queue
    report = reconcile(world.reconcile())
    # then: it fails DEAD_LETTERED with the last error in its reason, counted once; the letter is deleted
    assert (report.redriven, report.dead_images) == (0, 1)
    [image] = images_of(world, request_id)
    assert image is not None and image.error_code == DEAD_LETTERED
    assert image.error_message == dead_letter_reason("HTTP_STATUS: HTTP 503 from the source")
    assert "HTTP 503 from the source" in image.error_message
    counts = world.ledger.counts(request_id)
    assert counts is not None and (counts.failed, counts.complete) == (1, True)
    assert len(world.dead_images.deleted) == 1 and not world.dead_images.received


def test_a_dead_image_with_no_error_noted_fails_with_the_plain_reason(world: ReconcileFakes) -> None:
    # given: an image dead-lettered at the cap whose deliveries noted no error (each one crashed)
    request_id = expanded(world, products_csv(urls("a.jpg")))
    world.dead_images.put(at_the_cap(world, world.queue.sent.pop()))
    # when
    reconcile(world.reconcile())
    # then
    [image] = images_of(world, request_id)
    assert image is not None and image.error_message == dead_letter_reason(None)
    assert "Last error" not in image.error_message


def test_the_same_dead_image_twice_is_counted_once(world: ReconcileFakes) -> None:
    # given: one image's message dead-lettered twice (SQS delivers at least once), beside another image pending
    request_id = expanded(world, products_csv(urls("a.jpg", "b.jpg")))
    body = at_the_cap(world, world.queue.sent[0])
    world.dead_images.put(body)
    world.dead_images.put(body)
    # when
    reconcile(world.reconcile())
    # then: one failure counted, the request still open for its other image
    counts = world.ledger.counts(request_id)
    assert counts is not None and (counts.failed, counts.complete) == (1, False)
    assert len(world.dead_images.deleted) == 2


def test_a_dead_image_of_an_ended_request_keeps_the_outcome_it_had(world: ReconcileFakes) -> None:
    # given: an image that succeeded on a late delivery after its message had been dead-lettered
    request_id = expanded(world, products_csv(urls("a.jpg")))
    [task] = image_tasks(world.queue.sent)
    settle([(task, succeeded(task))], world.catalog, world.ledger, world.now)
    world.dead_images.put(world.queue.sent.pop())
    # when
    reconcile(world.reconcile())
    # then: the first terminal state stands, and the count with it
    [image] = images_of(world, request_id)
    assert image is not None and image.status is ImageStatus.SUCCEEDED
    counts = world.ledger.counts(request_id)
    assert counts is not None and (counts.succeeded, counts.failed) == (1, 0)


def test_a_dead_letter_that_is_no_task_or_is_for_no_request_or_no_image_is_dropped(world: ReconcileFakes) -> None:
    # given: a letter that is no task, one for a request that does not exist, one for an image its request lacks
    request_id = expanded(world, products_csv(urls("a.jpg")))
    [task] = image_tasks(world.queue.sent)
    world.dead_images.put("not a task")
    world.dead_images.put(dataclasses.replace(task, request_id="no-such-request").to_message())
    world.dead_images.put(at_the_cap(world, dataclasses.replace(task, index=7).to_message()))
    # when
    report = reconcile(world.reconcile())
    # then: each is dropped (deleted, nothing failed, nothing counted)
    assert (report.dead_dropped, report.dead_images, report.redriven) == (3, 0, 0)
    assert len(world.dead_images.deleted) == 3
    assert images_of(world, request_id) == [None]
    assert world.ledger.counts(request_id).done == 0  # type: ignore[union-attr]


def test_a_dead_image_whose_settle_fails_stays_in_its_queue_for_the_next_round(world: ReconcileFakes) -> None:
    # given: a dead image at the cap, and the catalog refusing writes of image states
    request_id = expanded(world, products_csv(urls("a.jpg")))
    world.dead_images.put(at_the_cap(world, world.queue.sent.pop()))
    catalog = Refusing(world.catalog, "record_images")
    world.catalog = catalog  # type: ignore[assignment]
    # when: a round drains it
    assert reconcile(world.reconcile()).dead_images == 0
    # then: the letter is not deleted: it is seen again (its visibility timeout passes) and settled then
    assert world.dead_images.deleted == [] and len(world.dead_images.received) == 1
    catalog.down = False
    world.dead_images.reappear()
    later(world, INTERVAL)
    assert reconcile(world.reconcile()).dead_images == 1
    [image] = images_of(world, request_id)
    assert image is not None and image.error_code == DEAD_LETTERED


def test_a_dead_chunk_past_its_deadline_ends_its_request_failed_at_once(world: ReconcileFakes) -> None:
    # given: a chunk dead-lettered for the first time, its request past its deadline
    request_id = accepted(world, products_csv(urls("a.jpg")))
    world.dead_chunks.put(world.chunks_queue.sent.pop())
    past_its_deadline(world, request_id)
    # when
    report = reconcile(world.reconcile())
    # then: not put back (no time is left for it): the request ends FAILED, DEAD_LETTERED, naming its rows
    assert (report.redriven, report.dead_chunks) == (0, 1)
    record = world.catalog.get(request_id)
    assert record is not None and record.status is RequestStatus.FAILED and record.error is not None
    assert record.error["code"] == DEAD_LETTERED and "Rows 2+" in record.error["message"]
    assert request_id in world.ledger.failed_requests  # handed to the notify path: its webhook follows


def test_a_dead_chunk_before_its_deadline_goes_back_to_its_queue_and_its_request_then_completes(
    world: ReconcileFakes,
) -> None:
    # given: a request's one chunk dead-lettered (every delivery killed), its request before its deadline
    request_id = accepted(world, products_csv(urls("a.jpg"), urls("b.jpg")))
    world.dead_chunks.put(world.chunks_queue.sent.pop())
    # when: a round, then the pipeline goes on (the chunk expanded, its images processed, the notify path run)
    report = reconcile(world.reconcile())
    [body] = world.chunks_queue.sent
    chunk = parse_task(world.chunks_queue.sent.pop())
    assert isinstance(chunk, ChunkTask)
    expand_chunk(chunk, world.chunks())
    first, second = image_tasks(world.queue.sent)
    settle(
        [(first, succeeded(first)), (second, ImageOutcome.failure("HTTP_STATUS", "HTTP 404"))],
        world.catalog,
        world.ledger,
        world.now,
    )
    complete_request(request_id, world.completion())
    # then: the chunk went back once (not ended DEAD_LETTERED), and the request completed with one wake-up
    assert (report.redriven, report.dead_chunks) == (1, 0) and redrive_count(body) == 1
    assert status_of(world, request_id) is RequestStatus.COMPLETED_WITH_ERRORS
    counts = world.ledger.counts(request_id)
    assert counts is not None and (counts.succeeded, counts.failed) == (1, 1)
    assert [parse_task(body) for body in world.webhook_queue.sent] == [WebhookTask(request_id)]


def test_a_dead_wake_up_put_back_enough_or_no_longer_expected_is_dropped(world: ReconcileFakes) -> None:
    # given: an ended request whose webhook is pending, and two dead wake-ups: one at the cap, one superseded
    request_id = expanded(world, products_csv(urls("a.jpg")))
    [task] = image_tasks(world.queue.sent)
    settle([(task, succeeded(task))], world.catalog, world.ledger, world.now)
    stalled(world)
    reconcile(world.reconcile())  # the lost completion is resumed: the request ends and its wake-up is queued
    [wake] = world.webhook_queue.sent
    world.dead_webhooks.put(at_the_cap(world, wake))
    world.dead_webhooks.put(WebhookTask(request_id, "an-older-wake").to_message())
    # when
    later(world, INTERVAL)
    report = reconcile(world.reconcile())
    # then: neither goes back on the webhook queue
    assert (report.redriven, report.dead_dropped) == (0, 2)
    assert world.webhook_queue.sent == [wake]


def test_an_ingest_failure_that_carries_no_s3_event_is_dropped(world: ReconcileFakes) -> None:
    # given: a record on the ingest failures queue that is not an on-failure record of an S3 event
    world.ingest_failures.put(json.dumps({"requestPayload": {"something": "else"}}))
    # when
    report = reconcile(world.reconcile())
    # then: deleted, nothing ingested
    assert report.uploads_reingested == 0 and len(world.ingest_failures.deleted) == 1


# -- presigned uploads and deadlines ----------------------------------------------------------------------------


def test_an_upload_that_never_came_ends_upload_expired_only_after_its_grace(world: ReconcileFakes) -> None:
    # given: a presigned slot whose file never came
    slot = create_upload("tenant-a", HOOK, world.intake(), check_url=refuse_nothing)
    # when: a round runs at its expiry, and one after the grace
    later(world, world.intake_policy.upload_expiry_s + world.intake_policy.upload_grace_s)
    assert reconcile(world.reconcile()).uploads_expired == 0
    later(world, 1)
    report = reconcile(world.reconcile())
    # then: only the second ends it, FAILED, UPLOAD_EXPIRED, handed to notify
    assert report.uploads_expired == 1
    record = world.catalog.get(slot.request_id)
    assert record is not None and record.error is not None and record.error["code"] == "UPLOAD_EXPIRED"
    assert slot.request_id in world.ledger.failed_requests


def test_a_failed_requests_lost_wake_up_is_sent_again_once_the_stall_window_has_passed(world: ReconcileFakes) -> None:
    # given: a presigned slot whose file never came, ended UPLOAD_EXPIRED by a round; the wake-up its webhook
    # expected from the notify path was lost
    slot = create_upload("tenant-a", HOOK, world.intake(), check_url=refuse_nothing)
    later(world, world.intake_policy.upload_expiry_s + world.intake_policy.upload_grace_s + 1)
    assert reconcile(world.reconcile()).uploads_expired == 1
    ended = world.now
    # when: a round within the stall window from its end, and one past it
    later(world, world.reconcile_policy.stall_after_s - 1)
    early = reconcile(world.reconcile())
    later(world, 2)
    report = reconcile(world.reconcile())
    # then: it ended at the round's time; only the second round wakes its webhook, once
    assert (early.webhooks_woken, report.webhooks_woken) == (0, 1)
    record = world.catalog.get(slot.request_id)
    assert record is not None and record.status is RequestStatus.FAILED and record.completed_at == ended
    [wake] = [parse_task(body) for body in world.webhook_queue.sent]
    assert isinstance(wake, WebhookTask) and wake.request_id == slot.request_id and wake.wake is not None


def test_a_file_that_came_but_was_never_ingested_is_ingested_by_a_round(world: ReconcileFakes) -> None:
    # given: a presigned upload whose file is in the bucket but whose event was lost
    slot = create_upload("tenant-a", HOOK, world.intake(), check_url=refuse_nothing)
    world.uploads.put(incoming_key(slot.request_id), products_csv(urls("a.jpg", "b.jpg")), "text/csv")
    # when: a round after the upload's expiry and grace
    later(world, world.intake_policy.upload_expiry_s + world.intake_policy.upload_grace_s + 1)
    report = reconcile(world.reconcile())
    # then: ingested (counted, its chunk queued), not expired
    assert (report.uploads_reingested, report.uploads_expired) == (1, 0)
    record = world.catalog.get(slot.request_id)
    assert record is not None and not record.awaiting_upload and record.total_images == 2
    assert len(world.chunks_queue.sent) == 1


def test_past_its_deadline_a_requests_pending_images_fail_and_it_completes_through_the_normal_path(
    world: ReconcileFakes,
) -> None:
    # given: a request with three images, one succeeded, two never processed
    request_id = expanded(world, products_csv(urls("a.jpg", "b.jpg"), urls("c.jpg")))
    first, *_ = image_tasks(world.queue.sent)
    settle([(first, succeeded(first))], world.catalog, world.ledger, world.now)
    past_its_deadline(world, request_id)
    # when
    report = reconcile(world.reconcile())
    # then: the two fail DEADLINE_EXCEEDED, the one that succeeded stays, and the request completes with its
    # output CSV and its webhook's wake-up
    assert (report.past_deadline, report.images_failed_at_deadline) == (1, 2)
    outcomes = images_of(world, request_id)
    statuses = [image.status for image in outcomes if image]
    assert statuses == [ImageStatus.SUCCEEDED, ImageStatus.FAILED, ImageStatus.FAILED]
    assert [image.error_code for image in outcomes if image][1:] == [DEADLINE_EXCEEDED] * 2
    assert status_of(world, request_id) is RequestStatus.COMPLETED_WITH_ERRORS
    assert output_csv_key(request_id) in world.uploads.objects
    assert [parse_task(body) for body in world.webhook_queue.sent] == [WebhookTask(request_id)]


def test_past_its_deadline_a_request_with_rows_never_read_ends_failed(world: ReconcileFakes) -> None:
    # given: a request whose chunk was never expanded (its rows never became products)
    request_id = accepted(world, products_csv(urls("a.jpg")))
    world.chunks_queue.sent.clear()
    past_its_deadline(world, request_id)
    # when
    report = reconcile(world.reconcile())
    # then: no image path can end it: it ends FAILED, DEADLINE_EXCEEDED, handed to notify
    assert report.past_deadline == 1
    record = world.catalog.get(request_id)
    assert record is not None and record.status is RequestStatus.FAILED and record.error is not None
    assert record.error["code"] == DEADLINE_EXCEEDED
    assert request_id in world.ledger.failed_requests


def test_at_its_deadline_images_recorded_but_never_counted_are_counted_once_and_it_completes(
    world: ReconcileFakes,
) -> None:
    # given: both images recorded as succeeded, but the process function died before counting them
    request_id = expanded(world, products_csv(urls("a.jpg", "b.jpg")))
    world.catalog.record_images([(task, succeeded(task)) for task in image_tasks(world.queue.sent)])
    past_its_deadline(world, request_id)
    # when
    report = reconcile(world.reconcile())
    # then: nothing is failed; they are counted (their savings kept) and the request completes
    assert report.images_failed_at_deadline == 0
    counts = world.ledger.counts(request_id)
    assert counts is not None and (counts.succeeded, counts.failed, counts.savings.bytes_in) == (2, 0, 200)
    assert status_of(world, request_id) is RequestStatus.COMPLETED


def test_a_round_after_an_outage_moves_a_deadline_only_by_the_time_its_request_spent_in_it(
    world: ReconcileFakes,
) -> None:
    # given: a round found the stores answering; an hour later (no round since) a request is accepted
    reconcile(world.reconcile())
    outage_began = world.now
    world.now += timedelta(hours=1)
    request_id = expanded(world, products_csv(urls("a.jpg")))
    record = world.catalog.get(request_id)
    assert record is not None and record.deadline_at is not None
    # when: the next round comes three hours after that
    world.now += timedelta(hours=3)
    report = reconcile(world.reconcile())
    # then: its deadline moves by its own three hours, not by the four since the last healthy round
    assert report.deadlines_paused == 1 and world.now - outage_began == timedelta(hours=4)
    moved = world.catalog.get(request_id)
    assert moved is not None and moved.deadline_at == record.deadline_at + timedelta(hours=3)


# -- stalled requests ------------------------------------------------------------------------------------------


def test_a_request_that_moved_within_the_stall_window_is_left_alone(world: ReconcileFakes) -> None:
    # given: a request that sat still for the stall window, then counted one image a moment ago; its other image's
    # message is lost
    expanded(world, products_csv(urls("a.jpg", "b.jpg")))
    first, _ = image_tasks(world.queue.sent)
    world.queue.sent.clear()
    stalled(world)
    settle([(first, succeeded(first))], world.catalog, world.ledger, world.now)
    # when
    later(world, 1)
    report = reconcile(world.reconcile())
    # then: the count moved it: nothing re-queued, nothing marked
    assert (report.stalled, report.requeued, report.waiting) == (0, 0, 0)
    assert world.queue.sent == [] and world.ledger.touched == []


def test_a_request_accepted_a_moment_ago_is_not_stalled_until_the_stall_window_has_passed(
    world: ReconcileFakes,
) -> None:
    # given: a request accepted a moment ago whose one chunk's message was lost
    request_id = accepted(world, products_csv(urls("a.jpg")))
    [chunk] = world.chunks_queue.sent
    world.chunks_queue.sent.clear()
    # when: a round just inside the stall window from its acceptance, and one just past it
    later(world, world.reconcile_policy.stall_after_s - 1)
    early = reconcile(world.reconcile())
    later(world, 1)
    report = reconcile(world.reconcile())
    # then: its counter's progress starts at its acceptance: only the second round sends the chunk again
    assert (early.stalled, early.requeued) == (0, 0)
    assert (report.stalled, report.requeued) == (1, 1) and world.chunks_queue.sent == [chunk]
    assert world.ledger.touched == [request_id]


def test_a_stalled_requests_lost_images_are_requeued_once_per_stall_window(world: ReconcileFakes) -> None:
    # given: a request whose two image messages were lost a stall window ago
    request_id = expanded(world, products_csv(urls("a.jpg", "b.jpg")))
    lost = image_tasks(world.queue.sent)
    world.queue.sent.clear()
    stalled(world)
    # when: a round, then another on schedule
    first_round = world.now
    report = reconcile(world.reconcile())
    moved = world.ledger.counts(request_id)
    later(world, INTERVAL)
    again = reconcile(world.reconcile())
    # then: the first re-queues them (and marks the request moving at its time), the next leaves them to the queue
    assert (report.stalled, report.requeued) == (1, 2) and world.ledger.touched == [request_id]
    assert moved is not None and moved.progress_at == first_round.timestamp()
    assert image_tasks(world.queue.sent) == lost
    assert (again.stalled, again.requeued) == (0, 0) and len(world.queue.sent) == 2


def test_a_request_whose_last_count_was_made_but_whose_completion_was_lost_is_completed(
    world: ReconcileFakes,
) -> None:
    # given: every image counted; the notify function never ran (the stream's retries ran out)
    request_id = expanded(world, products_csv(urls("a.jpg")))
    [task] = image_tasks(world.queue.sent)
    settle([(task, succeeded(task))], world.catalog, world.ledger, world.now)
    assert status_of(world, request_id) is RequestStatus.PENDING
    stalled(world)
    # when
    report = reconcile(world.reconcile())
    # then
    assert report.completions_resumed == 1
    assert status_of(world, request_id) is RequestStatus.COMPLETED
    assert [parse_task(body) for body in world.webhook_queue.sent] == [WebhookTask(request_id)]


def test_a_request_whose_images_are_all_terminal_but_not_all_counted_is_counted_then_completed(
    world: ReconcileFakes,
) -> None:
    # given: both images recorded, one of them counted (a crash between recording and counting the other)
    request_id = expanded(world, products_csv(urls("a.jpg", "b.jpg")))
    first, second = image_tasks(world.queue.sent)
    settle([(first, succeeded(first))], world.catalog, world.ledger, world.now)
    world.catalog.record_images([(second, ImageOutcome.failure("HTTP_STATUS", "HTTP 404"))])
    world.queue.sent.clear()  # their messages are gone
    stalled(world)
    # when: a round, then one a stall window later (the notify path's completion was lost too)
    counting = reconcile(world.reconcile())
    counts = world.ledger.counts(request_id)
    stalled(world)
    reconcile(world.reconcile())
    # then: the first counts the missing one (and only it), re-queueing nothing (nothing is pending); the next
    # completes the request, its webhook's wake-up queued once
    assert (counting.stalled, counting.requeued) == (0, 0) and world.queue.sent == []
    assert counts is not None and (counts.succeeded, counts.failed, counts.complete) == (1, 1, True)
    assert status_of(world, request_id) is RequestStatus.COMPLETED_WITH_ERRORS
    assert [parse_task(body) for body in world.webhook_queue.sent] == [WebhookTask(request_id)]


# -- the round itself -------------------------------------------------------------------------------------------


def test_one_request_that_cannot_be_reconciled_does_not_stop_the_round_for_the_others(
    world: ReconcileFakes,
) -> None:
    # given: two requests past their deadline, the first of which the catalog cannot read the products of
    broken = expanded(world, products_csv(urls("a.jpg")))
    healthy = expanded(world, products_csv(urls("b.jpg")))
    real = world.catalog.products

    def products(request_id: str, after_row: int = 0, limit: int | None = None) -> Iterator[ProductRecord]:
        if request_id == broken:
            raise ConnectionError("this request's products cannot be read")
        return real(request_id, after_row, limit)

    world.catalog.products = products  # type: ignore[method-assign]
    past_its_deadline(world, healthy)
    # when
    reconcile(world.reconcile())
    # then: the other one ends; the broken one waits for the next round
    assert status_of(world, healthy) is RequestStatus.COMPLETED_WITH_ERRORS
    assert not status_of(world, broken).is_final


def test_a_round_out_of_time_stops_says_so_and_the_next_one_goes_on(world: ReconcileFakes) -> None:
    # given: a request past its deadline
    request_id = expanded(world, products_csv(urls("a.jpg")))
    past_its_deadline(world, request_id)
    # when: a round whose invocation has no time left, then one that has
    stopped = reconcile(world.reconcile(), time_left=lambda: 0.0)
    ended = status_of(world, request_id)
    report = reconcile(world.reconcile())
    # then: the first stops before the request and says so; the second ends it
    assert stopped.out_of_time and stopped.past_deadline == 0 and not ended.is_final
    assert report.past_deadline == 1 and status_of(world, request_id).is_final


def test_a_failing_lease_store_is_an_outage_and_the_round_ends_nothing(world: ReconcileFakes) -> None:
    # given: a request past its deadline, and the table that holds the round's lease failing
    request_id = expanded(world, products_csv(urls("a.jpg")))
    past_its_deadline(world, request_id)
    world.lease = Refusing(world.lease)  # type: ignore[assignment]
    # when
    report = reconcile(world.reconcile())
    # then
    assert report.store_outage and report.past_deadline == 0
    assert not status_of(world, request_id).is_final


def test_a_round_ends_no_request_while_only_the_ledger_is_down(world: ReconcileFakes) -> None:
    # given: a request past its deadline, and DynamoDB's counter failing (MongoDB answers)
    request_id = expanded(world, products_csv(urls("a.jpg")))
    world.dead_images.put(at_the_cap(world, world.queue.sent[0]))
    past_its_deadline(world, request_id)
    world.ledger = Refusing(world.ledger, "counts")  # type: ignore[assignment]
    # when
    report = reconcile(world.reconcile())
    # then: nothing is failed, the dead letter waits
    assert report.store_outage and (report.past_deadline, report.dead_images) == (0, 0)
    assert images_of(world, request_id) == [None] and world.dead_images.letters
