"""Finish a request: once its last image is counted, the output CSV and final status; for every request that
ends (completed or failed), one signed webhook.

The notify function owns the webhook: `send_webhook` is the only code that signs and sends it, and it runs there
(after `complete_request`) or in the reconciler. Whatever ends a request FAILED elsewhere (a refused or expired
upload, a failed fan-out) calls `fail_request`, which flips the ledger's counter so the same stream filter brings
the request to the notify function."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from ips.csv_output import OutputRow, stream_output_csv
from ips.model import NO_SAVINGS, ImageStatus, RequestStatus
from ips.ports import Catalog, Clock, Ledger, RequestRecord, UploadStore
from ips.quotas import Allowance
from ips.tenant_secrets import TenantSecrets
from ips.webhook import RetryPolicy, WebhookPoster, WebhookSigner, deliver, encode_event

logger = logging.getLogger(__name__)
WEBHOOK_EVENT = "request.completed"


def output_csv_key(request_id: str) -> str:
    """In the private uploads bucket, beside the input it is made from: never under the public asset URLs (the
    processed bucket holds only images), read only through a short-lived presigned GET (output_csv_url)."""
    return f"{request_id}/output.csv"


@dataclass(frozen=True)
class OutputLinks:
    """Links to output CSVs: a fresh presigned GET, valid for `expiry_s` (OUTPUT_URL_EXPIRY_SECONDS), on every
    status read and webhook."""

    uploads: UploadStore
    expiry_s: int = 900

    def url(self, key: str) -> str:
        return self.uploads.presigned_get(key, self.expiry_s)


@dataclass(frozen=True)
class FailPorts:
    """What ending a request FAILED needs."""

    catalog: Catalog
    ledger: Ledger


@dataclass(frozen=True)
class WebhookPorts:
    """What sending an ended request's webhook needs."""

    catalog: Catalog
    allowance: Allowance  # the ended request's images leave flight here
    secrets: TenantSecrets
    poster: WebhookPoster
    links: OutputLinks
    clock: Clock
    # Longer than one delivery with all its retries, shorter than the notify function's timeout.
    lease_s: int = 240
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class CompletionPorts:
    """What completing a request needs: its products and counter, where the output CSV goes, and its webhook."""

    catalog: Catalog
    ledger: Ledger
    uploads: UploadStore
    clock: Clock
    webhooks: WebhookPorts


def webhook_message_id(request_id: str) -> str:
    # Stable per request, so every retry (and any re-run of this step) carries the same id.
    return f"msg_{request_id}"


class WebhookBusy(RuntimeError):
    """Another holder's claim on the webhook is live: fail this try so it is tried again (the holder may die)."""


def fail_request(request_id: str, code: str, message: str, ports: FailPorts, **details: Any) -> bool:
    """End a request FAILED, once, and hand it to the notify path. True when this call ended it."""
    ended = ports.catalog.mark_failed(request_id, code, message, **details)
    # Also when the catalog had it FAILED already: a crash between the two steps is mended by the next call.
    record = ports.catalog.get(request_id)
    if record is not None and record.status is RequestStatus.FAILED:
        ports.ledger.fail(request_id)
    return ended


def complete_request(request_id: str, ports: CompletionPorts) -> RequestStatus | None:
    """Idempotent: a request's final state is set once and never overwritten, and a second run sends no second
    webhook. A request that ended FAILED only has its webhook sent."""
    record = ports.catalog.get(request_id)
    if record is not None and record.status is RequestStatus.FAILED:
        send_webhook(request_id, ports.webhooks)
        return record.status
    counts = ports.ledger.counts(request_id)
    if record is None or counts is None or not counts.complete:
        logger.warning("completion for an unknown or unfinished request", extra={"request_id": request_id})
        return None
    rows = (  # streamed from MongoDB: a 100,000-product request is never held as records
        OutputRow(
            product.serial_number,
            product.product_name,
            product.input_urls,
            [image.output_url if image and image.status is ImageStatus.SUCCEEDED else None for image in product.images],
        )
        for product in ports.catalog.products(request_id)
    )
    key = output_csv_key(request_id)
    # Private: the uploads bucket, handed out only as presigned GETs (the processed bucket is public).
    ports.uploads.put_stream(key, stream_output_csv(rows), "text/csv; charset=utf-8")
    status = RequestStatus.COMPLETED if counts.failed == 0 else RequestStatus.COMPLETED_WITH_ERRORS
    if not ports.catalog.finalise(request_id, status, counts, key, ports.clock()):
        status = (ports.catalog.get(request_id) or record).status  # it had ended already: keep that end
    send_webhook(request_id, ports.webhooks)
    return status


def webhook_data(record: RequestRecord, links: OutputLinks) -> dict[str, Any]:
    data: dict[str, Any] = {
        "requestId": record.request_id,
        "status": record.status.value,
        "total": record.total_images,
        "succeeded": record.succeeded or 0,
        "failed": record.failed or 0,
        "options": record.options.to_document(),
        "savings": (record.savings or NO_SAVINGS).to_public(),
        "reused": (record.savings or NO_SAVINGS).reused,
    }
    if record.output_csv_key:
        data["outputCsvUrl"] = links.url(record.output_csv_key)
    if record.error:
        data["error"] = {"code": record.error["code"], "message": record.error["message"]}
    return data


def webhook_signer(record: RequestRecord, ports: WebhookPorts) -> WebhookSigner | None:
    """How this request's webhook is signed: with its tenant's own secret(s), never the master (None: no master)."""
    if not ports.secrets.master:
        return None
    return WebhookSigner(ports.secrets.signing_secrets(record.tenant, ports.clock()))


def send_webhook(request_id: str, ports: WebhookPorts) -> bool:
    """Send the ended request's webhook, once. True when this call delivered it. Raises WebhookBusy while
    another holder's claim is live, so the caller's try fails and is retried."""
    record = ports.catalog.get(request_id)
    if record is not None and record.status.is_final:
        ports.allowance.release(request_id)  # every ended request comes here once or more: released once
    if record is None or not record.status.is_final or not record.webhook_url:
        return False
    signer = webhook_signer(record, ports)
    if signer is None:
        logger.error("a webhook is due but WEBHOOK_SECRET is not set", extra={"request_id": request_id})
        return False
    now = ports.clock()
    if not ports.catalog.claim_webhook(request_id, ports.lease_s, now):
        current = ports.catalog.get(request_id)
        if current is not None and current.webhook and current.webhook.get("delivered"):
            logger.info("webhook already delivered", extra={"request_id": request_id})
            return False
        raise WebhookBusy(f"the webhook of {request_id} is being sent by another holder")
    body = encode_event(WEBHOOK_EVENT, webhook_data(record, ports.links), int(now.timestamp()))
    delivery = deliver(ports.poster, signer, record.webhook_url, webhook_message_id(request_id), body, ports.retry)
    ports.catalog.record_webhook(request_id, asdict(delivery))
    log = logger.info if delivery.delivered else logger.error
    log("webhook delivery finished", extra={"request_id": request_id, **asdict(delivery)})
    return delivery.delivered
