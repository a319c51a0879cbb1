"""Finish a request: once its last image is counted, the output CSV and final status; for every request that
ends (completed or failed), one signed webhook."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from ips.context import Context
from ips.csv_output import OutputRow, render_output_csv
from ips.model import NO_SAVINGS, ImageStatus, RequestStatus
from ips.ports import RequestRecord
from ips.webhook import WebhookSigner, deliver, encode_event

logger = logging.getLogger(__name__)
WEBHOOK_EVENT = "request.completed"


def output_csv_key(request_id: str) -> str:
    return f"{request_id}/output.csv"


def webhook_message_id(request_id: str) -> str:
    # Stable per request, so every retry (and any re-run of this step) carries the same id.
    return f"msg_{request_id}"


def complete_request(request_id: str, context: Context) -> RequestStatus | None:
    """Idempotent: running it again rewrites the same CSV and status, and never sends a second webhook."""
    backends = context.backends
    record = backends.catalog.get(request_id)
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
    backends.processed.put(key, render_output_csv(rows), "text/csv; charset=utf-8")
    status = RequestStatus.COMPLETED if counts.failed == 0 else RequestStatus.COMPLETED_WITH_ERRORS
    backends.catalog.finalise(request_id, status, counts, key, backends.clock())
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
        data["outputCsvUrl"] = context.settings.asset_url(record.output_csv_key)
    if record.error:
        data["error"] = {"code": record.error["code"], "message": record.error["message"]}
    return data


def notify(request_id: str, context: Context) -> bool:
    """Send the ended request's webhook, once. True when this call delivered it."""
    backends, settings = context.backends, context.settings
    record = backends.catalog.get(request_id)
    if record is None or not record.status.is_final or not record.webhook_url:
        return False
    if not settings.webhook_secret:
        logger.error("a webhook is due but WEBHOOK_SECRET is not set", extra={"request_id": request_id})
        return False
    now = backends.clock()
    if not backends.catalog.claim_webhook(request_id, settings.webhook_lease_seconds, now):
        logger.info("webhook already sent or being sent", extra={"request_id": request_id})
        return False
    body = encode_event(WEBHOOK_EVENT, webhook_data(record, context), int(now.timestamp()))
    delivery = deliver(
        backends.webhooks,
        WebhookSigner(settings.webhook_secret),
        record.webhook_url,
        webhook_message_id(request_id),
        body,
        settings.webhook_retry,
    )
    backends.catalog.record_webhook(request_id, asdict(delivery))
    log = logger.info if delivery.delivered else logger.error
    log("webhook delivery finished", extra={"request_id": request_id, **asdict(delivery)})
    return delivery.delivered
