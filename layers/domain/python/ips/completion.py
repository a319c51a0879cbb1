"""Finish a request once its last image is counted: output CSV, final status, one signed webhook."""

from __future__ import annotations

import logging
from dataclasses import asdict

from ips.context import Context
from ips.csv_output import OutputRow, render_output_csv
from ips.model import Counts, ImageStatus, RequestStatus
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
    rows = [
        OutputRow(
            product.serial_number,
            product.product_name,
            product.input_urls,
            [image.output_url if image and image.status is ImageStatus.SUCCEEDED else None for image in product.images],
        )
        for product in backends.catalog.products(request_id)
    ]
    key = output_csv_key(request_id)
    backends.processed.put(key, render_output_csv(rows), "text/csv; charset=utf-8")
    status = RequestStatus.COMPLETED if counts.failed == 0 else RequestStatus.COMPLETED_WITH_ERRORS
    backends.catalog.finalise(request_id, status, counts, key, backends.clock())
    if record.webhook_url:
        _notify(request_id, record.webhook_url, status, counts, context)
    return status


def _notify(request_id: str, url: str, status: RequestStatus, counts: Counts, context: Context) -> None:
    backends, settings = context.backends, context.settings
    if not settings.webhook_secret:
        logger.error("a webhook is due but WEBHOOK_SECRET is not set", extra={"request_id": request_id})
        return
    if not backends.ledger.claim_notification(request_id, settings.notify_lease_seconds):
        logger.info("webhook already sent or being sent", extra={"request_id": request_id})
        return
    timestamp = int(backends.clock().timestamp())
    body = encode_event(
        WEBHOOK_EVENT,
        {
            "requestId": request_id,
            "status": status.value,
            "total": counts.total,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "outputCsvUrl": settings.asset_url(output_csv_key(request_id)),
        },
        timestamp,
    )
    delivery = deliver(
        backends.webhooks,
        WebhookSigner(settings.webhook_secret),
        url,
        webhook_message_id(request_id),
        body,
        settings.webhook_retry,
    )
    backends.catalog.record_webhook(request_id, asdict(delivery))
    backends.ledger.finish_notification(request_id)
    log = logger.info if delivery.delivered else logger.error
    log("webhook delivery finished", extra={"request_id": request_id, **asdict(delivery)})
