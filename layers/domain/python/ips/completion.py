"""Finish a request: once its last image is counted, the output CSV and final status; for every request that
ends (completed or failed), one signed webhook.

The notify path owns the webhook: `notify` is the only code that signs and sends it. Whatever ends a request
FAILED elsewhere (a refused or expired upload, a failed fan-out) calls `fail_request`, which flips the ledger's
counter so the same stream filter brings the request to the notify function."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from ips.context import Context
from ips.csv_output import OutputRow, stream_output_csv
from ips.model import NO_SAVINGS, ImageStatus, RequestStatus
from ips.ports import RequestRecord
from ips.quotas import release_images
from ips.tenant_secrets import signing_secrets
from ips.webhook import WebhookSigner, deliver, encode_event

logger = logging.getLogger(__name__)
WEBHOOK_EVENT = "request.completed"


def output_csv_key(request_id: str) -> str:
    """In the private uploads bucket, beside the input it is made from: never under the public asset URLs (the
    processed bucket holds only images), read only through a short-lived presigned GET (output_csv_url)."""
    return f"{request_id}/output.csv"


def output_csv_url(key: str, context: Context) -> str:
    """A fresh presigned GET, valid for OUTPUT_URL_EXPIRY_SECONDS: a new one on every status read and webhook."""
    return context.backends.uploads.presigned_get(key, context.settings.output_url_expiry_s)


def webhook_message_id(request_id: str) -> str:
    # Stable per request, so every retry (and any re-run of this step) carries the same id.
    return f"msg_{request_id}"


class WebhookBusy(RuntimeError):
    """Another holder's claim on the webhook is live: fail this try so it is tried again (the holder may die)."""


def fail_request(request_id: str, code: str, message: str, context: Context, **details: Any) -> bool:
    """End a request FAILED, once, and hand it to the notify path. True when this call ended it."""
    backends = context.backends
    ended = backends.catalog.mark_failed(request_id, code, message, **details)
    # Also when the catalog had it FAILED already: a crash between the two steps is mended by the next call.
    record = backends.catalog.get(request_id)
    if record is not None and record.status is RequestStatus.FAILED:
        backends.ledger.fail(request_id)
    return ended


def complete_request(request_id: str, context: Context) -> RequestStatus | None:
    """Idempotent: a request's final state is set once and never overwritten, and a second run sends no second
    webhook. A request that ended FAILED only has its webhook sent."""
    backends = context.backends
    record = backends.catalog.get(request_id)
    if record is not None and record.status is RequestStatus.FAILED:
        notify(request_id, context)
        return record.status
    counts = backends.ledger.counts(request_id)
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
        for product in backends.catalog.products(request_id)
    )
    key = output_csv_key(request_id)
    # Private: the uploads bucket, handed out only as presigned GETs (the processed bucket is public).
    backends.uploads.put_stream(key, stream_output_csv(rows), "text/csv; charset=utf-8")
    status = RequestStatus.COMPLETED if counts.failed == 0 else RequestStatus.COMPLETED_WITH_ERRORS
    if not backends.catalog.finalise(request_id, status, counts, key, backends.clock()):
        status = (backends.catalog.get(request_id) or record).status  # it had ended already: keep that end
    notify(request_id, context)
    return status


def webhook_data(record: RequestRecord, context: Context) -> dict[str, Any]:
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
        data["outputCsvUrl"] = output_csv_url(record.output_csv_key, context)
    if record.error:
        data["error"] = {"code": record.error["code"], "message": record.error["message"]}
    return data


def webhook_signer(record: RequestRecord, context: Context) -> WebhookSigner | None:
    """How this request's webhook is signed: with its tenant's own secret(s), never the master (None: no master)."""
    if not context.settings.webhook_secret:
        return None
    return WebhookSigner(signing_secrets(record.tenant, context, context.backends.clock()))


def notify(request_id: str, context: Context) -> bool:
    """Send the ended request's webhook, once. True when this call delivered it. Raises WebhookBusy while
    another holder's claim is live, so the caller's try fails and is retried."""
    backends, settings = context.backends, context.settings
    record = backends.catalog.get(request_id)
    if record is not None and record.status.is_final:
        release_images(request_id, context)  # every ended request comes here once or more: released once
    if record is None or not record.status.is_final or not record.webhook_url:
        return False
    signer = webhook_signer(record, context)
    if signer is None:
        logger.error("a webhook is due but WEBHOOK_SECRET is not set", extra={"request_id": request_id})
        return False
    now = backends.clock()
    if not backends.catalog.claim_webhook(request_id, settings.webhook_lease_seconds, now):
        current = backends.catalog.get(request_id)
        if current is not None and current.webhook and current.webhook.get("delivered"):
            logger.info("webhook already delivered", extra={"request_id": request_id})
            return False
        raise WebhookBusy(f"the webhook of {request_id} is being sent by another holder")
    body = encode_event(WEBHOOK_EVENT, webhook_data(record, context), int(now.timestamp()))
    delivery = deliver(
        backends.webhooks,
        signer,
        record.webhook_url,
        webhook_message_id(request_id),
        body,
        settings.webhook_retry,
    )
    backends.catalog.record_webhook(request_id, asdict(delivery))
    log = logger.info if delivery.delivered else logger.error
    log("webhook delivery finished", extra={"request_id": request_id, **asdict(delivery)})
    return delivery.delivered
