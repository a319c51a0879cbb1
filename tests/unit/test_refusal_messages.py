"""What a tenant reads when a URL is refused (issue 19, item 5): why, in words, and never the address a name
resolved to, which would map our internal DNS for anyone who asks. Each surface a refusal reaches is driven
through its use case with the real outbound client, whose resolver answers a private address for the name (no
connection is ever opened: the name is refused before one)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ips.completion.fakes import CompletionFakes
from ips.completion.service import complete_request, deliver_webhook
from ips.intake.fakes import IntakeFakes
from ips.intake.service import accept_csv
from ips.processing.fakes import ProcessingFakes
from ips.processing.settle import settle
from ips.shared.errors import InvalidInput
from ips.shared.model import ImageOutcome, ImageStatus, ImageTask, RequestStatus, WebhookTask
from ips.shared.ports import RequestRecord
from ips_adapters.outbound import OutboundClient, OutboundPolicy, check_url
from ips_runtime.status_document import webhook_delivery

PRIVATE = ("10.20.30.40", "fd00::17")  # what the internal name resolves to
CSV = b"S. No.,Product Name,Input Image Urls\n1,Mug,http://images.invalid/a.jpg\n"


def internal(host: str, port: int) -> list[str]:
    return list(PRIVATE)


def assert_explained(message: str, name: str) -> None:
    assert name in message and "not public" in message, message
    assert not [address for address in PRIVATE if address in message], message


@pytest.fixture
def client() -> Iterator[OutboundClient]:
    with OutboundClient(OutboundPolicy(), resolver=internal) as outbound:
        yield outbound


def test_the_upload_routes_webhook_refusal_names_no_address(client: OutboundClient) -> None:
    with pytest.raises(InvalidInput) as refused:
        accept_csv(
            CSV,
            "tenant-a",
            "https://hooks.internal.test/done",
            IntakeFakes().intake(),
            check_url=lambda url: check_url(url, client.policy, resolver=internal),
        )
    [problem] = refused.value.problems
    assert (refused.value.code, problem.code, problem.column) == ("WEBHOOK_URL_INVALID",) * 2 + ("webhookUrl",)
    assert_explained(problem.message, "hooks.internal.test")


def test_the_status_documents_webhook_last_error_names_no_address(client: OutboundClient) -> None:
    # The URL passed at upload; by the time the webhook is sent the name resolves to a private address.
    world = CompletionFakes(poster=client)  # type: ignore[arg-type]
    world.catalog.create(
        RequestRecord("req-1", "tenant-a", RequestStatus.PENDING, world.now, 1, 1, "https://hooks.internal.test/x")
    )
    world.ledger.open("req-1", 1, world.now)
    task = ImageTask("req-1", 2, 0, "http://images.invalid/a.jpg", "salt", "tenant-a")
    settle([(task, ImageOutcome.failure("HTTP_STATUS", "HTTP 404"))], world.catalog, world.ledger, world.now)
    complete_request("req-1", world.completion())
    deliver_webhook(WebhookTask("req-1"), world.webhooks())  # the webhook function's attempt, from its queue
    record = world.catalog.get("req-1")
    assert record is not None
    delivery = webhook_delivery(record.webhook)
    assert delivery is not None and delivery["delivered"] is False
    assert delivery["lastError"].startswith("ADDRESS_REFUSED")
    assert_explained(delivery["lastError"], "hooks.internal.test")
    assert not [address for address in PRIVATE if address in json.dumps(delivery)]


def test_an_image_urls_refusal_names_no_address(client: OutboundClient) -> None:
    # Image URLs get the same rule: the message is the image's failure reason in the status document.
    world = ProcessingFakes(fetcher=client)  # type: ignore[arg-type]
    task = ImageTask("req-1", 2, 0, "http://cdn.internal.test/a.jpg", "salt", "tenant-a")
    world.open_request("req-1")
    world.run_batch(task)
    failed = world.catalog.images[("req-1", 2, 0)]
    assert (failed.status, failed.error_code) == (ImageStatus.FAILED, "ADDRESS_REFUSED")
    assert_explained(failed.error_message or "", "cdn.internal.test")
