"""Ending a request (ips.completion) over in-memory ports: the output CSV and final status once, one signed
webhook per ended request (verified with the tenant's derived secret), a live claim of another holder respected."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from standardwebhooks import Webhook

from ips.completion import WebhookBusy, complete_request, fail_request, send_webhook
from ips.csv_input import ProductRow
from ips.model import Counts, ImageOutcome, ImageStatus, ImageTask, RequestStatus
from ips.ports import RequestRecord
from ips.settle import settle
from ips.tenant_secrets import derive_secret
from tests.unit.fakes import MASTER_SECRET, Fakes, MemoryPoster

HOOK = "http://hooks.invalid/done"


def request_with_images(world: Fakes, *outcomes: ImageOutcome, webhook: str | None = HOOK) -> str:
    """A request of one product whose images ended as `outcomes`, all counted."""
    request_id = "req-1"
    urls = tuple(f"http://images.invalid/{index}.jpg" for index in range(len(outcomes)))
    world.catalog.create(RequestRecord(request_id, "tenant-a", RequestStatus.PENDING, world.now, 1, len(urls), webhook))
    world.catalog.add_products(request_id, [ProductRow(2, "7", "Mug", urls)])
    world.ledger.open(request_id, len(urls))
    for index, outcome in enumerate(outcomes):
        task = ImageTask(request_id, 2, index, urls[index], "salt", "tenant-a")
        settle([(task, outcome)], world.catalog, world.ledger)
    world.quotas.reserve("tenant-a", request_id, len(urls), 100, 100, "2026-12-01")
    return request_id


SUCCEEDED = ImageOutcome(ImageStatus.SUCCEEDED, output_url="http://assets.invalid/a.jpg", input_bytes=9, output_bytes=3)
FAILED = ImageOutcome.failure("HTTP_STATUS", "HTTP 404")


def verified(world: Fakes) -> dict[str, object]:
    """The one delivery's payload, after verifying its signature with the tenant's own secret."""
    [(url, body, headers)] = world.poster.posts
    assert url == HOOK
    Webhook(derive_secret(MASTER_SECRET, "tenant-a", 0)).verify(body, headers)
    return json.loads(body)


def test_a_finished_request_gets_its_output_csv_final_status_and_one_signed_webhook() -> None:
    world = Fakes()
    request_id = request_with_images(world, SUCCEEDED, FAILED)
    assert complete_request(request_id, world.completion()) is RequestStatus.COMPLETED_WITH_ERRORS
    assert complete_request(request_id, world.completion()) is RequestStatus.COMPLETED_WITH_ERRORS  # a retry
    record = world.catalog.get(request_id)
    assert record is not None and (record.succeeded, record.failed) == (1, 1)
    rows = list(csv.reader(io.StringIO(world.uploads.get(f"{request_id}/output.csv").decode())))
    assert rows[1] == [
        "7",
        "Mug",
        "http://images.invalid/0.jpg,http://images.invalid/1.jpg",
        "http://assets.invalid/a.jpg,",
    ]
    event = verified(world)  # exactly one delivery, though completion ran twice
    assert event["data"]["status"] == "COMPLETED_WITH_ERRORS"  # type: ignore[index]
    assert event["data"]["outputCsvUrl"].startswith(f"http://uploads.invalid/{request_id}/output.csv")  # type: ignore[index]
    assert record.webhook == {"delivered": True, "attempts": 1, "last_status": 204, "last_error": None}
    assert world.quotas.released == {request_id}  # its images left flight


def test_an_unfinished_request_is_not_completed() -> None:
    world = Fakes()
    request_id = request_with_images(world, SUCCEEDED)
    world.ledger.counters[request_id] = Counts(2, 1, 0)  # one image still pending
    assert complete_request(request_id, world.completion()) is None
    assert world.poster.posts == [] and world.uploads.objects == {}


def test_a_failed_request_keeps_its_end_and_sends_only_its_failure_webhook() -> None:
    world = Fakes()
    request_id = request_with_images(world, SUCCEEDED)
    assert fail_request(request_id, "FAN_OUT_FAILED", "rows lost", world.failing())
    assert not fail_request(request_id, "DEADLINE_EXCEEDED", "late", world.failing())  # the first end stays
    assert request_id in world.ledger.failed_requests
    assert complete_request(request_id, world.completion()) is RequestStatus.FAILED
    data = verified(world)["data"]
    assert (data["status"], data["error"]) == ("FAILED", {"code": "FAN_OUT_FAILED", "message": "rows lost"})  # type: ignore[index]
    assert "outputCsvUrl" not in data and world.uploads.objects == {}  # type: ignore[operator]


def test_a_live_claim_of_another_holder_fails_the_try_and_an_expired_one_is_taken_over() -> None:
    world = Fakes()
    request_id = request_with_images(world, SUCCEEDED)
    assert world.catalog.claim_webhook(request_id, 240, world.now)  # another sender, mid-send
    with pytest.raises(WebhookBusy):
        complete_request(request_id, world.completion())
    assert world.poster.posts == []
    world.now += timedelta(seconds=241)  # it died: its claim expires
    assert send_webhook(request_id, world.webhooks())
    assert not send_webhook(request_id, world.webhooks())  # delivered: never again
    assert len(world.poster.posts) == 1


def test_a_receiver_that_keeps_failing_is_given_up_after_the_retry_budget_and_recorded() -> None:
    world = Fakes(poster=MemoryPoster(500))
    request_id = request_with_images(world, SUCCEEDED)
    complete_request(request_id, world.completion())
    assert len(world.poster.posts) == 3  # the budget (fakes: 3 attempts, no waiting)
    record = world.catalog.get(request_id)
    assert record is not None and record.webhook == {
        "delivered": False,
        "attempts": 3,
        "last_status": 500,
        "last_error": "HTTP 500",
    }


def test_without_a_master_secret_no_webhook_is_sent_unsigned() -> None:
    world = Fakes()
    request_id = request_with_images(world, SUCCEEDED)
    assert complete_request(request_id, world.completion(master=None)) is RequestStatus.COMPLETED
    assert world.poster.posts == []
