"""Ending a request (ips.completion.service) over in-memory ports: the output CSV and final status once, and the webhook
on its own queue; each wake-up of a delivery makes at most one signed POST (verified with the tenant's derived
secret) within the short timeout, schedules the next through the queue, and the caps on attempts and on the
window hold however the wake-ups repeat. A tenant's failing receiver waits out its pause without being tried
once per pending webhook, and never pauses another tenant's."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from standardwebhooks import Webhook

from ips.completion.fakes import MASTER_SECRET, CompletionFakes, MemoryPoster
from ips.completion.service import Step, complete_request, deliver_webhook
from ips.completion.tenant_secrets import derive_secret
from ips.processing.settle import settle
from ips.shared.csv_input import ProductRow
from ips.shared.failing import fail_request
from ips.shared.fetching import FetchError
from ips.shared.messages import parse_task
from ips.shared.model import Counts, ImageOutcome, ImageStatus, ImageTask, RequestStatus, WebhookTask
from ips.shared.ports import RequestRecord

HOOK = "http://hooks.invalid/done"
SILENT = FetchError("TIMEOUT", "hooks.invalid:80 did not finish within the 10 s total timeout", permanent=False)


def request_with_images(
    world: CompletionFakes,
    *outcomes: ImageOutcome,
    webhook: str | None = HOOK,
    request_id: str = "req-1",
    tenant="tenant-a",
) -> str:
    """A request of one product whose images ended as `outcomes`, all counted."""
    urls = tuple(f"http://images.invalid/{index}.jpg" for index in range(len(outcomes)))
    world.catalog.create(RequestRecord(request_id, tenant, RequestStatus.PENDING, world.now, 1, len(urls), webhook))
    world.catalog.add_products(request_id, [ProductRow(2, "7", "Mug", urls)])
    world.ledger.open(request_id, len(urls), world.now)
    for index, outcome in enumerate(outcomes):
        task = ImageTask(request_id, 2, index, urls[index], "salt", tenant)
        settle([(task, outcome)], world.catalog, world.ledger, world.now)
    world.quotas.reserve(tenant, request_id, len(urls), 100, 100, "2026-12-01")
    return request_id


SUCCEEDED = ImageOutcome(ImageStatus.SUCCEEDED, output_url="http://assets.invalid/a.jpg", input_bytes=9, output_bytes=3)
FAILED = ImageOutcome.failure("HTTP_STATUS", "HTTP 404")


def verified(world: CompletionFakes, post: int = 0, tenant: str = "tenant-a") -> dict[str, object]:
    """A delivery's payload, after verifying its signature with the tenant's own secret."""
    url, body, headers = world.poster.posts[post]
    assert url == HOOK
    Webhook(derive_secret(MASTER_SECRET, tenant, 0)).verify(body, headers)
    return json.loads(body)


def queued_wake_ups(world: CompletionFakes) -> list[WebhookTask]:
    tasks = [parse_task(body) for body in world.webhook_queue.sent]
    assert all(isinstance(task, WebhookTask) for task in tasks)
    return tasks  # type: ignore[return-value]


def scheduled(world: CompletionFakes) -> tuple[WebhookTask, float]:
    """The one wake-up scheduled since the last call, and its delay."""
    [(body, delay)] = world.webhook_queue.scheduled
    world.webhook_queue.scheduled.clear()
    task = parse_task(body)
    assert isinstance(task, WebhookTask)
    return task, delay


def state(world: CompletionFakes, request_id: str = "req-1") -> dict[str, object]:
    record = world.catalog.get(request_id)
    assert record is not None and record.webhook is not None
    return record.webhook


def test_a_finished_request_gets_its_output_csv_and_final_status_and_its_webhook_is_queued_not_sent() -> None:
    world = CompletionFakes()
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
    assert world.poster.posts == []  # completing never waits on a receiver
    assert queued_wake_ups(world) == [WebhookTask(request_id)] * 2
    assert world.quotas.released == {request_id}  # its images left flight

    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.DELIVERED
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.DONE  # the retry's wake-up
    event = verified(world)
    assert len(world.poster.posts) == 1 and world.poster.timeouts == [world.webhook_policy.timeout_s]
    assert event["data"]["status"] == "COMPLETED_WITH_ERRORS"  # type: ignore[index]
    assert event["data"]["outputCsvUrl"].startswith(f"http://uploads.invalid/{request_id}/output.csv")  # type: ignore[index]
    assert state(world) == {"delivered": True, "attempts": 1, "last_status": 204, "last_error": None,
                            "next_attempt_at": None}  # fmt: skip


def test_an_unfinished_request_is_not_completed() -> None:
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED)
    world.ledger.counters[request_id] = Counts(2, 1, 0)  # one image still pending
    assert complete_request(request_id, world.completion()) is None
    assert world.webhook_queue.sent == [] and world.uploads.objects == {}
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.DONE  # not ended: nothing to send
    assert world.poster.posts == []


def test_a_failed_request_keeps_its_end_and_sends_only_its_failure_webhook() -> None:
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED)
    assert fail_request(request_id, "FAN_OUT_FAILED", "rows lost", world.failing())
    assert not fail_request(request_id, "DEADLINE_EXCEEDED", "late", world.failing())  # the first end stays
    assert request_id in world.ledger.failed_requests
    assert complete_request(request_id, world.completion()) is RequestStatus.FAILED
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.DELIVERED
    data = verified(world)["data"]
    assert (data["status"], data["error"]) == ("FAILED", {"code": "FAN_OUT_FAILED", "message": "rows lost"})  # type: ignore[index]
    assert "outputCsvUrl" not in data and world.uploads.objects == {}  # type: ignore[operator]


def test_a_failed_attempt_is_retried_through_the_queue_with_backoff_under_the_same_webhook_id() -> None:
    world = CompletionFakes(poster=MemoryPoster(500, SILENT, 204))
    request_id = request_with_images(world, SUCCEEDED)
    complete_request(request_id, world.completion())
    policy = world.webhook_policy.retry

    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.RETRY
    retry, delay = scheduled(world)
    assert delay == policy.delay(1) and retry.wake  # a new wake-up, the one the document now expects
    assert state(world)["attempts"] == 1 and state(world)["next_attempt_at"] == world.now + timedelta(seconds=delay)
    # The first wake-up again (SQS delivers twice): superseded, dropped without a POST or a copy of itself.
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.DONE
    assert world.webhook_queue.scheduled == []
    # The retry's wake-up before it is due (a long pause is made of 15-minute hops): woken again, nothing sent.
    world.now += timedelta(seconds=delay / 2)
    assert deliver_webhook(retry, world.webhooks()) is Step.WAITING
    assert scheduled(world) == (retry, delay / 2)

    world.now += timedelta(seconds=delay / 2)
    assert deliver_webhook(retry, world.webhooks()) is Step.RETRY  # the receiver never answered
    second, delay = scheduled(world)
    assert delay == policy.delay(2) and state(world)["last_error"].startswith("TIMEOUT")  # type: ignore[union-attr]
    world.now += timedelta(seconds=delay)
    assert deliver_webhook(second, world.webhooks()) is Step.DELIVERED
    assert {headers["webhook-id"] for _, _, headers in world.poster.posts} == {f"msg_{request_id}"}
    assert (state(world)["attempts"], state(world)["delivered"]) == (3, True)


def test_attempts_are_capped_by_count_and_by_window_whatever_the_wake_ups() -> None:
    world = CompletionFakes(poster=MemoryPoster(500))
    request_id = request_with_images(world, SUCCEEDED)
    complete_request(request_id, world.completion())
    attempts = world.webhook_policy.retry.attempts
    wake = WebhookTask(request_id)
    steps = []
    for _ in range(50):  # many more wake-ups than attempts: duplicates, hops, the reconciler's
        steps.append(deliver_webhook(wake, world.webhooks()))
        if world.webhook_queue.scheduled:
            wake, delay = scheduled(world)
            world.now += timedelta(seconds=delay)
    assert len(world.poster.posts) == attempts == steps.count(Step.RETRY) + 1
    assert Step.GAVE_UP in steps and state(world)["gave_up"] is True and state(world)["attempts"] == attempts

    windowed = CompletionFakes(poster=MemoryPoster(500))
    request_id = request_with_images(windowed, SUCCEEDED)
    complete_request(request_id, windowed.completion())
    assert deliver_webhook(WebhookTask(request_id), windowed.webhooks()) is Step.RETRY
    wake, _ = scheduled(windowed)
    windowed.now += timedelta(seconds=windowed.webhook_policy.resend_window_s)
    assert deliver_webhook(wake, windowed.webhooks()) is Step.GAVE_UP
    assert len(windowed.poster.posts) == 1 and state(windowed)["gave_up"] is True


def test_a_tenants_dead_receiver_is_tried_once_per_pause_and_never_pauses_another_tenant() -> None:
    world = CompletionFakes(poster=MemoryPoster(SILENT))
    silent = [request_with_images(world, SUCCEEDED, request_id=f"a-{n}") for n in range(5)]
    other = request_with_images(world, SUCCEEDED, request_id="b-1", tenant="tenant-b")  # the same origin
    for request_id in silent:
        complete_request(request_id, world.completion())
    assert deliver_webhook(WebhookTask(silent[0]), world.webhooks()) is Step.RETRY
    world.webhook_queue.scheduled.clear()
    # The receiver failed: tenant A's other deliveries wait out its pause without a POST (nor an attempt).
    for request_id in silent[1:]:
        assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.WAITING
    assert len(world.poster.posts) == 1
    assert all(world.catalog.get(request_id).webhook is None for request_id in silent[1:])  # type: ignore[union-attr]
    # Tenant B, same receiver origin: its own, untouched.
    world.poster.statuses = [204]
    complete_request(other, world.completion())
    assert deliver_webhook(WebhookTask(other), world.webhooks()) is Step.DELIVERED
    verified(world, post=1, tenant="tenant-b")
    # A's pause ends: the first wake-up to come tries the receiver again; the others wait for its answer.
    world.poster.statuses = [SILENT]
    world.now += timedelta(seconds=world.webhook_policy.retry.delay(1))
    steps = [deliver_webhook(WebhookTask(request_id), world.webhooks()) for request_id in silent[1:]]
    assert steps == [Step.RETRY] + [Step.WAITING] * 3
    assert len(world.poster.posts) == 3


def test_a_live_claim_of_another_sender_waits_for_it_and_an_expired_one_is_taken_over() -> None:
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED)
    complete_request(request_id, world.completion())
    assert world.catalog.claim_webhook(request_id, 60, world.now) == 1  # another sender, mid-POST
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.WAITING
    assert world.poster.posts == []
    wake, delay = scheduled(world)
    assert (wake, delay) == (WebhookTask(request_id), 60)
    world.now += timedelta(seconds=61)  # it died: its claim expired
    assert deliver_webhook(wake, world.webhooks()) is Step.DELIVERED
    assert len(world.poster.posts) == 1 and state(world)["attempts"] == 2  # the dead sender's attempt counts


def test_a_receiver_address_refused_for_good_is_given_up_at_once() -> None:
    refused = FetchError("ADDRESS_REFUSED", "not a public address", permanent=True)
    world = CompletionFakes(poster=MemoryPoster(refused))
    request_id = request_with_images(world, SUCCEEDED)
    complete_request(request_id, world.completion())
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.GAVE_UP
    assert world.webhook_queue.scheduled == [] and state(world)["gave_up"] is True
    assert world.receivers.states == {}  # says nothing about the receiver's health


def test_without_a_master_secret_no_webhook_is_sent_unsigned() -> None:
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED)
    assert complete_request(request_id, world.completion()) is RequestStatus.COMPLETED
    assert deliver_webhook(WebhookTask(request_id), world.webhooks(master=None)) is Step.DONE
    assert world.poster.posts == []
