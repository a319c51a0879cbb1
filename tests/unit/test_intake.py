"""Accepting a request (ips.intake.service) over in-memory ports: validated whole before anything is stored, counted
against the key's quota, fanned out in chunks; the presigned path pins what it validated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from ips.expansion.fakes import ExpansionFakes
from ips.expansion.service import expand_chunk
from ips.intake.fakes import IntakeFakes, refuse_nothing
from ips.intake.policy import IntakePolicy
from ips.intake.service import (
    OverdueUpload,
    accept_csv,
    create_upload,
    incoming_key,
    ingest_upload,
    input_csv_key,
    settle_overdue_upload,
)
from ips.shared.errors import InvalidInput
from ips.shared.fetching import FetchError
from ips.shared.messages import parse_task
from ips.shared.model import ChunkTask, ImageTask, RequestStatus
from ips.shared.quotas import ImageQuota, QuotaExceeded

CSV = (
    b"S. No.,Product Name,Input Image Urls\n"
    b'1,Mug,"http://images.invalid/a.jpg,http://images.invalid/b.jpg"\n'
    b"2,Lamp,http://images.invalid/c.jpg\n"
    b"3,Desk,http://images.invalid/d.jpg\n"
)


@dataclass
class FanOut(IntakeFakes, ExpansionFakes):
    """Intake, and the expansion of the chunks it queues, over one set of stores."""


def fakes(upload_grace_s: float = IntakePolicy.upload_grace_s, image_quota: ImageQuota | None = None) -> FanOut:
    policy = IntakePolicy(chunk_images=3, upload_grace_s=upload_grace_s)
    return FanOut(intake_policy=policy, image_quota=image_quota or ImageQuota())


def refuse_private(url: str) -> None:
    if "10.0.0.1" in url:
        raise FetchError("ADDRESS_REFUSED", "10.0.0.1 is not a public address", permanent=True)


def test_a_valid_csv_is_stored_recorded_counted_and_fanned_out_in_chunks() -> None:
    world = fakes()
    accepted = accept_csv(CSV, "tenant-a", "http://hooks.invalid/done", world.intake(), check_url=refuse_nothing)
    assert (accepted.status, accepted.total_products, accepted.total_images) == (RequestStatus.PENDING, 3, 4)
    request_id = accepted.request_id
    assert world.uploads.get(input_csv_key(request_id)) == CSV
    record = world.catalog.get(request_id)
    assert record is not None and (record.tenant, record.total_images) == ("tenant-a", 4)
    assert record.deadline_at == world.intake_policy.deadlines.deadline(world.now, 4)
    assert world.ledger.counts(request_id).total == 4  # type: ignore[union-attr]
    chunks = [parse_task(body) for body in world.chunks_queue.sent]
    assert [(c.chunk.first_row, c.chunk.products) for c in chunks if isinstance(c, ChunkTask)] == [(2, 2), (4, 1)]
    assert world.quotas.usage("tenant-a", "2026-12-01") == (4, 4)


def test_an_invalid_csv_stores_nothing_and_lists_every_problem() -> None:
    world = fakes()
    bad = b"S. No.,Product Name,Input Image Urls\n1,,http://images.invalid/a.jpg\n2,Lamp,ftp://x/y.jpg\n"
    with pytest.raises(InvalidInput) as refused:
        accept_csv(bad, "tenant-a", None, world.intake(), check_url=refuse_nothing)
    assert [(p.row, p.code) for p in refused.value.problems] == [(2, "EMPTY_PRODUCT_NAME"), (3, "INVALID_URL")]
    assert (world.uploads.objects, world.catalog.requests, world.chunks_queue.sent, world.quotas.reserved) == (
        {},
        {},
        [],
        {},
    )


def test_a_refused_webhook_url_or_a_full_quota_stores_nothing() -> None:
    world = fakes(image_quota=ImageQuota(per_day=3))
    with pytest.raises(InvalidInput) as refused:
        accept_csv(CSV, "tenant-a", "http://10.0.0.1/hook", world.intake(), check_url=refuse_private)
    assert refused.value.code == "WEBHOOK_URL_INVALID" and "not a public address" in refused.value.problems[0].message
    with pytest.raises(QuotaExceeded, match="quota of 3 images a day"):
        accept_csv(CSV, "tenant-a", None, world.intake(), check_url=refuse_nothing)
    assert (world.uploads.objects, world.catalog.requests, world.chunks_queue.sent) == ({}, {}, [])


def test_a_failed_fan_out_ends_the_request_failed_and_releases_its_images() -> None:
    world = fakes()

    def broken(bodies: object) -> None:
        raise ConnectionError("SQS unreachable")

    world.chunks_queue.send = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        accept_csv(CSV, "tenant-a", None, world.intake(), check_url=refuse_nothing)
    [record] = world.catalog.requests.values()
    assert record.status is RequestStatus.FAILED and record.error["code"] == "FAN_OUT_FAILED"  # type: ignore[index]
    assert record.request_id in world.ledger.failed_requests  # handed to the notify path
    assert world.quotas.released == {record.request_id}


def test_the_presigned_path_validates_the_pinned_copy_then_fans_it_out_once() -> None:
    world = fakes()
    slot = create_upload("tenant-a", None, world.intake(), check_url=refuse_nothing)
    assert world.catalog.get(slot.request_id).awaiting_upload  # type: ignore[union-attr]
    key = incoming_key(slot.request_id)
    world.uploads.put(key, CSV, "text/csv")
    assert ingest_upload(key, world.intake()) is RequestStatus.PENDING
    world.uploads.put(key, b"S. No.,Product Name,Input Image Urls\n", "text/csv")  # a second POST, same policy
    assert ingest_upload(key, world.intake()) is RequestStatus.PENDING  # already ingested: ignored
    record = world.catalog.get(slot.request_id)
    assert record is not None and record.input_key and record.input_key != key and record.total_images == 4
    assert world.uploads.get(record.input_key) == CSV  # the chunks read the validated copy
    assert len(world.chunks_queue.sent) == 2


def test_an_invalid_presigned_file_ends_the_request_failed_with_its_problems() -> None:
    world = fakes()
    slot = create_upload("tenant-a", None, world.intake(), check_url=refuse_nothing)
    world.uploads.put(incoming_key(slot.request_id), b"no header here\n", "text/csv")
    assert ingest_upload(incoming_key(slot.request_id), world.intake()) is RequestStatus.FAILED
    record = world.catalog.get(slot.request_id)
    assert record is not None and record.error["code"] == "CSV_INVALID" and record.error["errors"]  # type: ignore[index]
    assert slot.request_id in world.ledger.failed_requests and world.chunks_queue.sent == []


def test_an_upload_that_never_came_expires_after_its_grace() -> None:
    world = fakes(upload_grace_s=60)
    slot = create_upload("tenant-a", None, world.intake(), check_url=refuse_nothing)
    record = world.catalog.get(slot.request_id)
    assert record is not None and record.upload_expires_at is not None
    assert settle_overdue_upload(record, record.upload_expires_at, world.intake()) is None  # within the grace
    later = record.upload_expires_at + timedelta(seconds=61)
    assert settle_overdue_upload(record, later, world.intake()) is OverdueUpload.EXPIRED
    assert slot.request_id in world.ledger.failed_requests
    assert world.catalog.get(slot.request_id).error["code"] == "UPLOAD_EXPIRED"  # type: ignore[union-attr,index]


def test_a_file_that_came_but_was_never_ingested_is_ingested_after_the_grace() -> None:
    """S3 took a POST signed in time, and its event's ingestion failed every try (or the event was lost): the
    file is ingested then, not left waiting for ever (before: the expiry skipped it because the file exists)."""
    world = fakes(upload_grace_s=60)
    slot = create_upload("tenant-a", None, world.intake(), check_url=refuse_nothing)
    world.uploads.put(incoming_key(slot.request_id), CSV, "text/csv")
    record = world.catalog.get(slot.request_id)
    assert record is not None and record.upload_expires_at is not None
    later = record.upload_expires_at + timedelta(seconds=61)
    assert settle_overdue_upload(record, later, world.intake()) is OverdueUpload.INGESTED
    ingested = world.catalog.get(slot.request_id)
    assert ingested is not None and not ingested.awaiting_upload and ingested.total_images == 4
    assert len(world.chunks_queue.sent) == 2  # chunks of 3 images
    assert settle_overdue_upload(ingested, later, world.intake()) is None  # once


def test_a_chunk_becomes_products_and_image_tasks_and_again_adds_nothing_twice() -> None:
    world = fakes()
    accepted = accept_csv(CSV, "tenant-a", None, world.intake(), check_url=refuse_nothing)
    first = parse_task(world.chunks_queue.sent[0])
    assert isinstance(first, ChunkTask)
    assert expand_chunk(first, world.chunks()).sent == 3
    again = expand_chunk(first, world.chunks())  # redelivered: its recorded progress says every task went out
    assert (again.resumed_at, again.sent) == (3, 0)
    rows = [product.row for product in world.catalog.products(accepted.request_id)]
    assert rows == [2, 3]
    tasks = [parse_task(body) for body in world.queue.sent]
    assert all(isinstance(t, ImageTask) for t in tasks)
    assert {(t.row, t.index, t.url) for t in tasks} == {  # type: ignore[union-attr]
        (2, 0, "http://images.invalid/a.jpg"),
        (2, 1, "http://images.invalid/b.jpg"),
        (3, 0, "http://images.invalid/c.jpg"),
    }
