"""The reconciler under outages, over in-memory ports: while a store fails a round ends nothing; afterwards the
open requests' deadlines move by the outage; dead letters go back to their queue while their request has time
(a redrive count, capped); an ingestion that failed every try is run again, and a request awaiting its upload is
held to its deadline; a webhook whose wake-up was lost is woken (never sent) by the reconciler."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest

from ips.completion.fakes import MemoryPoster
from ips.completion.service import Step, complete_request, deliver_webhook
from ips.expansion.service import expand_chunk
from ips.intake.fakes import refuse_nothing
from ips.intake.service import accept_csv, create_upload, incoming_key
from ips.processing.settle import settle
from ips.reconcile.fakes import ReconcileFakes
from ips.reconcile.service import reconcile
from ips.shared.messages import parse_task, redrive_count, redriven
from ips.shared.model import ChunkTask, ImageOutcome, ImageTask, RequestStatus, WebhookTask

CSV = b'S. No.,Product Name,Input Image Urls\n1,Mug,"http://images.invalid/a.jpg,http://images.invalid/b.jpg"\n'
HOOK = "http://hooks.invalid/done"


@pytest.fixture
def world() -> ReconcileFakes:
    fakes = ReconcileFakes()
    fakes.reconcile_policy = dataclasses.replace(fakes.reconcile_policy, interval_s=300)
    return fakes


def a_request(world: ReconcileFakes, webhook: str | None = HOOK) -> str:
    """Accepted and expanded: two pending images on the images queue."""
    accepted = accept_csv(CSV, "tenant-a", webhook, world.intake(), check_url=refuse_nothing)
    chunk = parse_task(world.chunks_queue.sent.pop())
    assert isinstance(chunk, ChunkTask)
    expand_chunk(chunk, world.chunks())
    return accepted.request_id


def ended(world: ReconcileFakes, request_id: str) -> None:
    """Its images failed (404s), counted, and the request completed: its webhook's wake-up queued."""
    for body in world.queue.sent:
        task = parse_task(body)
        assert isinstance(task, ImageTask)
        settle([(task, ImageOutcome.failure("HTTP_STATUS", "HTTP 404"))], world.catalog, world.ledger, world.now)
    complete_request(request_id, world.completion())


def rounds_every_five_minutes(world: ReconcileFakes, seconds: float) -> None:
    """Time passes with the reconciler's rounds running as scheduled (no outage between them)."""
    world.now += timedelta(seconds=seconds)
    world.rounds.mark_healthy(world.now - timedelta(seconds=300))


class Down:
    """A store that refuses every call (an outage)."""

    def __init__(self, real: Any) -> None:
        self.real, self.down = real, True

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if not self.down or not callable(attribute):
            return attribute

        def refused(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the store is down")

        return refused


def test_while_a_store_is_down_nothing_ends_and_afterwards_the_deadlines_move_by_the_outage(
    world: ReconcileFakes,
) -> None:
    request_id = a_request(world)
    assert not reconcile(world.reconcile()).store_outage  # a healthy round: noted
    deadline = world.catalog.get(request_id).deadline_at  # type: ignore[union-attr]
    ledger = Down(world.ledger)
    world.ledger = ledger  # type: ignore[assignment]
    outage = timedelta(hours=4)  # longer than the request's deadline (3 h and a little)
    for _ in range(48):  # a round every five minutes, each finding DynamoDB down
        world.now += outage / 48
        report = reconcile(world.reconcile())
        assert report.store_outage and report.past_deadline == report.images_failed_at_deadline == 0
    ledger.down = False
    report = reconcile(world.reconcile())
    # Before: the first round after the outage failed both images DEADLINE_EXCEEDED, though they could be done.
    assert (report.store_outage, report.deadlines_paused, report.past_deadline) == (False, 1, 0)
    record = world.catalog.get(request_id)
    assert record is not None and record.deadline_at == deadline + outage
    assert all(image is None for product in world.catalog.products(request_id) for image in product.images)
    assert not reconcile(world.reconcile()).deadlines_paused  # moved once
    assert world.catalog.get(request_id).deadline_at == deadline + outage  # type: ignore[union-attr]


def test_a_round_that_ran_late_without_an_outage_moves_nothing(world: ReconcileFakes) -> None:
    request_id = a_request(world)
    reconcile(world.reconcile())
    deadline = world.catalog.get(request_id).deadline_at  # type: ignore[union-attr]
    world.now += timedelta(seconds=590)  # under two schedule periods
    assert reconcile(world.reconcile()).deadlines_paused == 0
    assert world.catalog.get(request_id).deadline_at == deadline  # type: ignore[union-attr]


def test_a_dead_image_goes_back_to_its_queue_while_its_request_has_time_then_ends(world: ReconcileFakes) -> None:
    request_id = a_request(world)
    first = world.queue.sent.pop(0)
    world.dead_images.put(first)  # every delivery failed (MongoDB was down)
    report = reconcile(world.reconcile())
    # Before: failed DEAD_LETTERED at once, the work thrown away.
    assert (report.redriven, report.dead_images) == (1, 0)
    back = world.queue.sent[-1]
    assert parse_task(back) == parse_task(first) and redrive_count(back) == 1
    assert world.catalog.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    for _ in range(world.reconcile_policy.dead_letter_redrives - 1):  # it keeps dying: put back up to the cap
        world.dead_images.put(world.queue.sent.pop())
        assert reconcile(world.reconcile()).redriven == 1
    world.dead_images.put(world.queue.sent.pop())
    assert redrive_count(world.dead_images.letters[0].body) == world.reconcile_policy.dead_letter_redrives
    report = reconcile(world.reconcile())
    assert (report.redriven, report.dead_images) == (0, 1)
    [product] = world.catalog.products(request_id)
    assert product.images[0] is not None and product.images[0].error_code == "DEAD_LETTERED"


def test_a_dead_image_past_its_deadline_ends_at_once(world: ReconcileFakes) -> None:
    request_id = a_request(world)
    world.dead_images.put(world.queue.sent.pop(0))
    record = world.catalog.get(request_id)
    world.catalog.requests[request_id] = dataclasses.replace(record, deadline_at=world.now)  # type: ignore[arg-type]
    rounds_every_five_minutes(world, 1)
    report = reconcile(world.reconcile())
    assert (report.redriven, report.dead_images) == (0, 1)


def test_a_dead_chunk_goes_back_to_its_queue_instead_of_ending_its_request(world: ReconcileFakes) -> None:
    accepted = accept_csv(CSV, "tenant-a", HOOK, world.intake(), check_url=refuse_nothing)
    chunk = world.chunks_queue.sent.pop()
    world.dead_chunks.put(chunk)
    report = reconcile(world.reconcile())
    # Before: the request ended FAILED, DEAD_LETTERED.
    assert (report.redriven, report.dead_chunks) == (1, 0)
    assert world.catalog.get(accepted.request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert parse_task(world.chunks_queue.sent[-1]) == parse_task(chunk)
    world.dead_chunks.put(json.dumps({**json.loads(chunk), "redrives": world.reconcile_policy.dead_letter_redrives}))
    assert reconcile(world.reconcile()).dead_chunks == 1
    record = world.catalog.get(accepted.request_id)
    assert record is not None and (record.status, record.error["code"]) == (RequestStatus.FAILED, "DEAD_LETTERED")  # type: ignore[index]


def test_a_dead_webhook_wake_up_goes_back_while_the_webhook_is_pending_and_is_dropped_once_delivered(
    world: ReconcileFakes,
) -> None:
    request_id = a_request(world)
    ended(world, request_id)
    [wake] = world.webhook_queue.sent
    world.dead_webhooks.put(wake)  # the webhook function died on it five times (MongoDB down)
    assert reconcile(world.reconcile()).redriven == 1
    assert parse_task(world.webhook_queue.sent[-1]) == WebhookTask(request_id)
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.DELIVERED
    world.dead_webhooks.put(redriven(wake))
    report = reconcile(world.reconcile())
    assert (report.redriven, report.dead_dropped) == (0, 1)


def on_failure_record(key: str) -> str:
    """Lambda's on-failure record of an S3 event's asynchronous invocation (the ingest failures queue)."""
    event = {"Records": [{"eventName": "ObjectCreated:Post", "s3": {"object": {"key": key.replace("/", "%2F")}}}]}
    return json.dumps({"version": "1.0", "requestContext": {"condition": "RetriesExhausted"}, "requestPayload": event})


def test_an_upload_whose_ingestion_failed_every_try_is_ingested_by_the_reconciler(world: ReconcileFakes) -> None:
    slot = create_upload("tenant-a", HOOK, world.intake(), check_url=refuse_nothing)
    world.uploads.put(incoming_key(slot.request_id), CSV, "text/csv")
    world.ingest_failures.put(on_failure_record(incoming_key(slot.request_id)))  # MongoDB was down meanwhile
    catalog = Down(world.catalog)
    world.catalog = catalog  # type: ignore[assignment]
    assert reconcile(world.reconcile()).store_outage  # still down: the letter waits
    catalog.down = False
    report = reconcile(world.reconcile())
    # Before: nothing drained the queue, and the request stayed PENDING, waiting for its upload, for ever.
    assert report.uploads_reingested == 1 and world.ingest_failures.deleted
    record = world.catalog.get(slot.request_id)
    assert record is not None and not record.awaiting_upload and record.total_images == 2
    assert len(world.chunks_queue.sent) == 1
    world.ingest_failures.put(on_failure_record(incoming_key(slot.request_id)))  # again: ingested already
    assert reconcile(world.reconcile()).uploads_reingested == 1 and len(world.chunks_queue.sent) == 1


def test_a_letter_whose_ingestion_fails_again_stays_for_the_next_round(world: ReconcileFakes) -> None:
    slot = create_upload("tenant-a", HOOK, world.intake(), check_url=refuse_nothing)
    world.uploads.put(incoming_key(slot.request_id), CSV, "text/csv")
    world.ingest_failures.put(on_failure_record(incoming_key(slot.request_id)))
    chunks = Down(world.chunks_queue)
    world.chunks_queue = chunks  # type: ignore[assignment]
    assert reconcile(world.reconcile()).uploads_reingested == 0
    assert world.ingest_failures.deleted == [] and len(world.ingest_failures.received) == 1


def test_a_request_awaiting_its_upload_is_held_to_its_deadline(world: ReconcileFakes) -> None:
    slot = create_upload("tenant-a", HOOK, world.intake(), check_url=refuse_nothing)
    world.uploads.put(incoming_key(slot.request_id), b"\xff\xfe not even text", "text/csv")
    uploads = Down(world.uploads)  # the file is there, but every ingestion of it fails
    record = world.catalog.get(slot.request_id)
    assert record is not None and record.deadline_at is not None
    world.uploads = uploads  # type: ignore[assignment]
    rounds_every_five_minutes(world, (record.deadline_at - world.now).total_seconds() + 1)
    report = reconcile(world.reconcile())
    # Before: the round returned before its deadline check, and the expiry skipped it (the file exists).
    assert report.past_deadline == 1
    ended = world.catalog.get(slot.request_id)
    assert ended is not None and (ended.status, ended.error["code"]) == (RequestStatus.FAILED, "DEADLINE_EXCEEDED")  # type: ignore[index]
    assert slot.request_id in world.ledger.failed_requests  # its webhook through notify


def test_a_lost_wake_up_is_replaced_once_per_stall_window_and_the_reconciler_never_posts(world: ReconcileFakes) -> None:
    world.poster = MemoryPoster(500)
    request_id = a_request(world)
    ended(world, request_id)
    world.webhook_queue.sent.clear()  # the wake-up is lost
    woken_at = []
    for _ in range(12):  # rounds every five minutes over an hour (a day would be 288)
        rounds_every_five_minutes(world, 300)
        if reconcile(world.reconcile()).webhooks_woken:
            woken_at.append(world.now)
    assert world.poster.posts == []  # the reconciler only wakes: the webhook function sends
    stall = timedelta(seconds=world.reconcile_policy.stall_after_s)
    assert len(woken_at) == 3 and all(later - earlier > stall for earlier, later in pairwise(woken_at))
    wakes = [parse_task(body) for body in world.webhook_queue.sent]
    assert len({wake.wake for wake in wakes}) == 3  # type: ignore[union-attr]
    # Only the newest is expected: the others, if they arrive after all, are dropped without a POST.
    assert [deliver_webhook(wake, world.webhooks()) for wake in wakes] == [Step.DONE] * 2 + [Step.RETRY]  # type: ignore[arg-type]
    assert len(world.poster.posts) == 1
