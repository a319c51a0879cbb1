"""Intake's rules over the fakes (IntakeFakes), GIVEN/WHEN/THEN: a refused CSV names each problem's code, row and
field and leaves nothing behind; quotas refuse before anything is stored; the presigned path's slot, and its
ingestion refusing a file too large or over the quota, replaced meanwhile, or delivered twice.

Beside these, tests/unit/test_intake.py holds the direct path's fan-out, a failed fan-out, the pinned copy, an
invalid presigned file and an overdue upload."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from ips.intake.fakes import IntakeFakes, refuse_nothing
from ips.intake.service import accept_csv, create_upload, incoming_key, ingest_upload
from ips.shared.csv_input import CsvLimits
from ips.shared.csv_input.model import NAME_COLUMN, URLS_COLUMN
from ips.shared.errors import InvalidInput
from ips.shared.model import RequestStatus
from ips.shared.quotas import QUOTA_CODE, ImageQuota, QuotaExceeded
from tests.unit.usecases.given import HOOK, TENANT, products_csv, urls


def with_quota(fakes: IntakeFakes, per_day: int, in_flight: int) -> IntakeFakes:
    fakes.image_quota = ImageQuota(per_day, in_flight)
    return fakes


def nothing_left_behind(fakes: IntakeFakes) -> bool:
    return not (fakes.uploads.objects or fakes.catalog.requests or fakes.chunks_queue.sent or fakes.quotas.reserved)


def test_a_refused_csv_names_each_problems_code_row_and_field_and_leaves_nothing_behind() -> None:
    # given: a CSV whose row 2 has no product name and whose row 3 has a URL that is no http(s) URL
    fakes = IntakeFakes()
    csv = (
        b'S. No.,Product Name,Input Image Urls\n1,,"http://images.invalid/a.jpg"\n2,Mug,"ftp://images.invalid/b.jpg"\n'
    )
    # when
    with pytest.raises(InvalidInput) as refused:
        accept_csv(csv, TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    # then
    assert refused.value.code == "CSV_INVALID"
    found = {(problem.row, problem.column, problem.code) for problem in refused.value.problems}
    assert found == {(2, NAME_COLUMN, "EMPTY_PRODUCT_NAME"), (3, URLS_COLUMN, "INVALID_URL")}
    assert nothing_left_behind(fakes)


def test_a_refused_webhook_url_names_its_field() -> None:
    # given: a webhook URL that is no URL
    fakes = IntakeFakes()
    # when
    with pytest.raises(InvalidInput) as refused:
        accept_csv(products_csv(urls("a.jpg")), TENANT, "not a url", fakes.intake(), check_url=refuse_nothing)
    # then
    [problem] = refused.value.problems
    assert (refused.value.code, problem.row, problem.column) == ("WEBHOOK_URL_INVALID", None, "webhookUrl")
    assert nothing_left_behind(fakes)


@pytest.mark.parametrize(("per_day", "in_flight", "limit"), [(2, 10, "a day"), (10, 2, "in flight")])
def test_a_request_over_its_tenants_quota_is_refused_before_anything_is_stored(
    per_day: int, in_flight: int, limit: str
) -> None:
    # given: a tenant allowed two images a day, or two in flight
    fakes = with_quota(IntakeFakes(), per_day, in_flight)
    # when: it sends three
    with pytest.raises(QuotaExceeded) as refused:
        accept_csv(
            products_csv(urls("a.jpg", "b.jpg", "c.jpg")), TENANT, None, fakes.intake(), check_url=refuse_nothing
        )
    # then: refused with the code, naming the limit; nothing stored, queued or counted
    assert refused.value.code == QUOTA_CODE and limit in refused.value.message
    assert nothing_left_behind(fakes)


def test_images_in_flight_leave_the_quota_when_their_request_ends() -> None:
    # given: a tenant allowed two images in flight, with a request of two accepted
    fakes = with_quota(IntakeFakes(), 100, 2)
    first = accept_csv(products_csv(urls("a.jpg", "b.jpg")), TENANT, None, fakes.intake(), check_url=refuse_nothing)
    with pytest.raises(QuotaExceeded):
        accept_csv(products_csv(urls("c.jpg")), TENANT, None, fakes.intake(), check_url=refuse_nothing)
    # when: the first request ends
    fakes.allowance().release(first.request_id)
    # then: another is accepted; another tenant was never held back
    accept_csv(products_csv(urls("c.jpg")), TENANT, None, fakes.intake(), check_url=refuse_nothing)
    accept_csv(products_csv(urls("d.jpg", "e.jpg")), "tenant-b", None, fakes.intake(), check_url=refuse_nothing)


def test_a_presigned_slot_awaits_its_file_under_the_incoming_prefix_within_the_files_limit() -> None:
    # given
    fakes = IntakeFakes()
    # when
    slot = create_upload(TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    # then: the POST writes the incoming key, capped at the presigned route's bytes; the request awaits it
    assert slot.post.fields["key"] == incoming_key(slot.request_id)
    assert slot.max_bytes == fakes.intake_policy.presigned_csv_limits.max_bytes == int(slot.post.fields["max"])
    record = fakes.catalog.get(slot.request_id)
    assert record is not None and record.awaiting_upload and record.status is RequestStatus.PENDING
    assert fakes.chunks_queue.sent == [] and not fakes.quotas.reserved  # counted when the file is ingested


def test_a_tenant_with_no_room_left_gets_no_presigned_slot() -> None:
    # given: a tenant that used its day's images
    fakes = with_quota(IntakeFakes(), 1, 10)
    accept_csv(products_csv(urls("a.jpg")), TENANT, None, fakes.intake(), check_url=refuse_nothing)
    # when
    with pytest.raises(QuotaExceeded):
        create_upload(TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    # then: no request waits for a file
    assert len(fakes.catalog.requests) == 1


def test_a_presigned_file_over_the_byte_limit_ends_its_request_failed_file_too_large() -> None:
    # given: a slot, and a file larger than the route allows (S3 enforces it in AWS; this holds where it is not)
    fakes = IntakeFakes()
    fakes.intake_policy = dataclasses.replace(fakes.intake_policy, presigned_csv_limits=CsvLimits(max_bytes=64))
    slot = create_upload(TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    fakes.uploads.put(incoming_key(slot.request_id), products_csv(urls("a.jpg", "b.jpg", "c.jpg")), "text/csv")
    # when
    status = ingest_upload(incoming_key(slot.request_id), fakes.intake())
    # then: FAILED with the problem, handed to notify, nothing queued
    assert status is RequestStatus.FAILED
    record = fakes.catalog.get(slot.request_id)
    assert record is not None and record.error is not None
    assert [problem["code"] for problem in record.error["errors"]] == ["FILE_TOO_LARGE"]
    assert slot.request_id in fakes.ledger.failed_requests and fakes.chunks_queue.sent == []
    assert list(fakes.uploads.objects) == [incoming_key(slot.request_id)]  # refused before any copy is made


def test_a_refused_presigned_file_ends_its_request_at_the_time_it_was_ingested() -> None:
    # given: a slot whose file, too large, came ten minutes after the slot was made
    fakes = IntakeFakes()
    fakes.intake_policy = dataclasses.replace(fakes.intake_policy, presigned_csv_limits=CsvLimits(max_bytes=64))
    slot = create_upload(TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    fakes.uploads.put(incoming_key(slot.request_id), products_csv(urls("a.jpg", "b.jpg", "c.jpg")), "text/csv")
    fakes.now += timedelta(minutes=10)
    # when
    ingest_upload(incoming_key(slot.request_id), fakes.intake())
    # then: it ended then, by the use case's clock (its completedAt, which the webhook's resend window runs from)
    record = fakes.catalog.get(slot.request_id)
    assert record is not None and record.status is RequestStatus.FAILED and record.completed_at == fakes.now


def test_a_presigned_file_over_the_quota_ends_its_request_failed_with_the_quota_code() -> None:
    # given: a tenant allowed two images a day, whose uploaded file has three
    fakes = with_quota(IntakeFakes(), 2, 10)
    slot = create_upload(TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    fakes.uploads.put(incoming_key(slot.request_id), products_csv(urls("a.jpg", "b.jpg", "c.jpg")), "text/csv")
    # when
    status = ingest_upload(incoming_key(slot.request_id), fakes.intake())
    # then
    assert status is RequestStatus.FAILED
    record = fakes.catalog.get(slot.request_id)
    assert record is not None and record.error is not None and record.error["code"] == QUOTA_CODE
    assert slot.request_id in fakes.ledger.failed_requests and fakes.chunks_queue.sent == []


def test_an_upload_event_delivered_twice_fans_the_file_out_once() -> None:
    # given: an uploaded file, ingested once
    fakes = IntakeFakes()
    slot = create_upload(TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    fakes.uploads.put(incoming_key(slot.request_id), products_csv(urls("a.jpg")), "text/csv")
    assert ingest_upload(incoming_key(slot.request_id), fakes.intake()) is RequestStatus.PENDING
    # when: its event comes again
    again = ingest_upload(incoming_key(slot.request_id), fakes.intake())
    # then: nothing more is queued or reserved
    assert again is RequestStatus.PENDING and len(fakes.chunks_queue.sent) == 1 and len(fakes.quotas.reserved) == 1


def test_an_upload_replaced_while_it_is_ingested_is_left_to_its_own_event() -> None:
    # given: a file whose pinned copy fails because a second POST replaced it meanwhile
    fakes = IntakeFakes()
    slot = create_upload(TENANT, HOOK, fakes.intake(), check_url=refuse_nothing)
    key = incoming_key(slot.request_id)
    fakes.uploads.put(key, products_csv(urls("a.jpg")), "text/csv")
    head = fakes.uploads.head

    def replaced_after_head(name: str):  # type: ignore[no-untyped-def]
        stored = head(name)
        fakes.uploads.put(key, products_csv(urls("b.jpg", "c.jpg")), "text/csv")
        return stored

    fakes.uploads.head = replaced_after_head  # type: ignore[method-assign]
    # when
    status = ingest_upload(key, fakes.intake())
    # then: this ingestion does nothing; the request still awaits (the new object's event ingests it)
    assert status is None
    record = fakes.catalog.get(slot.request_id)
    assert record is not None and record.awaiting_upload and fakes.chunks_queue.sent == []


def test_an_upload_for_no_request_is_ignored() -> None:
    # given: a file under the incoming prefix for a request that does not exist
    fakes = IntakeFakes()
    fakes.uploads.put(incoming_key("no-such-request"), products_csv(urls("a.jpg")), "text/csv")
    # when / then
    assert ingest_upload(incoming_key("no-such-request"), fakes.intake()) is None
    assert fakes.chunks_queue.sent == [] and not fakes.catalog.requests
