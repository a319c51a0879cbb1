"""Completion's rules over the fakes (CompletionFakes), GIVEN/WHEN/THEN, beside those tests/unit/test_completion.py
holds (the output CSV and final status once, one webhook each, retries through the queue, the caps on attempts
and window, a tenant's receiver paused, a live claim, a refused address, no master secret): a request ends
COMPLETED only with no image failed; no webhook URL, no wake-up; during a rotation both of a tenant's secrets
sign, never another tenant's; a receiver that answers is no longer paused."""

from __future__ import annotations

import json
from datetime import timedelta

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ips.completion.fakes import MASTER_SECRET, CompletionFakes, MemoryPoster
from ips.completion.service import Step, complete_request, deliver_webhook, receiver_of
from ips.completion.tenant_secrets import derive_secret
from ips.shared.model import RequestStatus, WebhookTask
from tests.unit.test_completion import SILENT, SUCCEEDED, request_with_images


def verifies(secret: str, world: CompletionFakes) -> bool:
    _, body, headers = world.poster.posts[-1]
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def test_a_request_whose_images_all_succeeded_ends_completed() -> None:
    # given: a request of two images, both succeeded and counted
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED, SUCCEEDED)
    # when
    status = complete_request(request_id, world.completion())
    # then
    assert status is RequestStatus.COMPLETED
    record = world.catalog.get(request_id)
    assert record is not None and (record.status, record.succeeded, record.failed) == (RequestStatus.COMPLETED, 2, 0)


def test_a_request_without_a_webhook_url_ends_with_no_wake_up_and_a_wake_up_for_it_does_nothing() -> None:
    # given: a finished request that gave no webhook URL
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED, webhook=None)
    # when
    complete_request(request_id, world.completion())
    step = deliver_webhook(WebhookTask(request_id), world.webhooks())
    # then: it ended, its images left flight, nothing was queued or posted
    assert world.catalog.get(request_id).status is RequestStatus.COMPLETED  # type: ignore[union-attr]
    assert world.quotas.released == {request_id}
    assert step is Step.DONE and world.webhook_queue.sent == [] and world.poster.posts == []


def test_during_a_rotation_both_of_the_tenants_secrets_sign_and_no_other_tenants_does() -> None:
    # given: a finished request of tenant-a, whose secret was rotated a moment ago
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED)
    complete_request(request_id, world.completion())
    world.secret_generations.rotate("tenant-a", world.now, 3600)
    # when
    assert deliver_webhook(WebhookTask(request_id), world.webhooks()) is Step.DELIVERED
    # then: the old and the new generation verify it; the master and another tenant's secret do not
    assert verifies(derive_secret(MASTER_SECRET, "tenant-a", 1), world)
    assert verifies(derive_secret(MASTER_SECRET, "tenant-a", 0), world)
    assert not verifies(derive_secret(MASTER_SECRET, "tenant-b", 1), world)
    assert not verifies(MASTER_SECRET, world)
    assert json.loads(world.poster.posts[-1][1])["data"]["requestId"] == request_id


def test_after_the_rotation_window_only_the_new_secret_signs() -> None:
    # given: a rotation whose window has passed
    world = CompletionFakes()
    request_id = request_with_images(world, SUCCEEDED)
    complete_request(request_id, world.completion())
    world.secret_generations.rotate("tenant-a", world.now, 60)
    world.now += timedelta(seconds=61)
    # when
    deliver_webhook(WebhookTask(request_id), world.webhooks())
    # then
    assert verifies(derive_secret(MASTER_SECRET, "tenant-a", 1), world)
    assert not verifies(derive_secret(MASTER_SECRET, "tenant-a", 0), world)


def test_a_receiver_that_answers_again_is_no_longer_paused() -> None:
    # given: a receiver that did not answer one request's webhook, then answers
    world = CompletionFakes(poster=MemoryPoster(SILENT, 204))
    first = request_with_images(world, SUCCEEDED, request_id="req-1")
    second = request_with_images(world, SUCCEEDED, request_id="req-2")
    complete_request(first, world.completion())
    complete_request(second, world.completion())
    assert deliver_webhook(WebhookTask(first), world.webhooks()) is Step.RETRY
    receiver = receiver_of(world.catalog.get(first))  # type: ignore[arg-type]
    assert receiver in world.receivers.states
    # when: its pause is over and the next attempt is delivered
    world.now += timedelta(seconds=world.webhook_policy.retry.delay(1))
    assert deliver_webhook(WebhookTask(second), world.webhooks()) is Step.DELIVERED
    # then: its failures are forgotten: the first request's retry goes straight to it
    assert receiver not in world.receivers.states
    retry = json.loads(world.webhook_queue.scheduled[-1][0])
    assert deliver_webhook(WebhookTask(first, retry["wake"]), world.webhooks()) is Step.DELIVERED
