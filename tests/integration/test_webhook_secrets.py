"""Each tenant's own webhook secret: read and rotated through the API, signing only that tenant's webhooks,
both secrets signing during a rotation window (issue 9: one secret used to sign every tenant's events)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from ips.shared.ports import utc_now
from localcloud.peers import WebhookReceiver
from tests.integration.conftest import API_KEY, TENANT_SECRET, WEBHOOK_SECRET, Pipeline
from tests.integration.test_api_handlers import HEADER, multipart

OTHER_KEY = "integration-other-key"


def secret_of(pipeline: Pipeline, api_key: str = API_KEY) -> dict:
    status, answer = pipeline.api("GET", "/api/v1/webhook-secret", api_key=api_key)
    assert status == 200, answer
    return answer


def request_with_webhook(pipeline: Pipeline, image_url: str, webhook: str, api_key: str = API_KEY) -> str:
    """Upload as `api_key`, process every image, run the completion: the request's one webhook is sent."""
    body, headers = multipart(HEADER + f"1,Mug,{image_url}/sk_rocket.jpg\n", webhook)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers, api_key=api_key)
    assert status == 202, answer
    pipeline.drain_queue()
    assert pipeline.notify()
    return answer["requestId"]


@pytest.fixture
def receivers(monkeypatch: pytest.MonkeyPatch, function_env: dict[str, str]) -> Iterator[list[WebhookReceiver]]:
    """Three receivers (secrets set by each test), their origins let through the outbound checks."""
    from ips_runtime.roots import reset_roots

    with WebhookReceiver() as first, WebhookReceiver() as second, WebhookReceiver() as third:
        origins = ",".join(receiver.origin for receiver in (first, second, third))
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{origins}")
        monkeypatch.setenv("WEBHOOK_ATTEMPTS", "2")
        reset_roots()
        yield [first, second, third]


def test_each_tenant_has_its_own_secret_and_another_tenants_does_not_verify(
    pipeline: Pipeline, image_server, receivers: list[WebhookReceiver]
) -> None:
    mine, theirs = secret_of(pipeline), secret_of(pipeline, OTHER_KEY)
    assert mine["secret"].startswith("whsec_") and theirs["secret"].startswith("whsec_")
    assert len({mine["secret"], theirs["secret"], WEBHOOK_SECRET}) == 3  # never the master
    assert mine == {"secret": TENANT_SECRET, "generation": 0, "rotatedAt": None, "previousSecretValidUntil": None}
    assert secret_of(pipeline) == mine  # stable: derived, not generated per read

    holding_theirs, holding_mine, _ = receivers
    holding_theirs.use_secret(theirs["secret"])
    holding_mine.use_secret(mine["secret"])
    # Tenant B's receiver is sent tenant A's webhook (as a forger would): it does not verify with B's secret.
    request_with_webhook(pipeline, image_server.url, holding_theirs.url)
    pipeline.webhooks_until(lambda: len(holding_theirs.rejected) == 2)  # every attempt, through the queue
    assert holding_theirs.deliveries == [] and holding_theirs.rejected == ["No matching signature found"] * 2
    request_id = request_with_webhook(pipeline, image_server.url, holding_mine.url)
    [delivery] = holding_mine.wait(1, timeout=10)
    assert delivery["payload"]["data"]["requestId"] == request_id and holding_mine.rejected == []


def test_after_a_rotation_both_secrets_verify_for_the_window_then_only_the_new(
    pipeline: Pipeline, image_server, receivers: list[WebhookReceiver], adapters
) -> None:
    old = secret_of(pipeline)
    before = utc_now().replace(microsecond=0)  # the store keeps milliseconds
    status, rotated = pipeline.api("POST", "/api/v1/webhook-secret/rotate")
    assert status == 200, rotated
    assert rotated["generation"] == 1 and rotated["secret"] not in (old["secret"], WEBHOOK_SECRET)
    window_end = datetime.fromisoformat(rotated["previousSecretValidUntil"])
    assert before + timedelta(hours=24) <= window_end <= utc_now() + timedelta(hours=24)  # the default window
    assert secret_of(pipeline) == rotated
    assert secret_of(pipeline, OTHER_KEY)["generation"] == 0  # another tenant's secret did not move

    with_old, with_new, with_old_later = receivers
    with_old.use_secret(old["secret"])
    with_new.use_secret(rotated["secret"])
    with_old_later.use_secret(old["secret"])
    # During the window: two signatures, one per secret; a receiver with either verifies.
    request_with_webhook(pipeline, image_server.url, with_old.url)
    request_with_webhook(pipeline, image_server.url, with_new.url)
    assert len(with_old.wait(1, timeout=10)) == 1 and len(with_new.wait(1, timeout=10)) == 1

    # After the window (the functions' clock moved past it): only the new secret signs.
    from ips_runtime.adapters import Adapters
    from ips_runtime.roots import overriding_roots

    def later(name: str, adapter: object) -> object:
        return (lambda: utc_now() + timedelta(hours=25)) if name == "clock" else adapter

    with overriding_roots(Adapters.from_env(later)):
        assert secret_of(pipeline)["previousSecretValidUntil"] is None
        request_with_webhook(pipeline, image_server.url, with_old_later.url)
        request_with_webhook(pipeline, image_server.url, with_new.url)
    # (each attempt refused; an undelivered webhook may be tried again by the notify path: never accepted)
    assert with_old_later.deliveries == [] and with_old_later.rejected
    assert set(with_old_later.rejected) == {"No matching signature found"}
    assert len(with_new.wait(2, timeout=10)) == 2
