"""Finish a request: once its last image is counted, the output CSV and final status; for every request that
ends (completed or failed), one signed webhook.

Completing never waits on a receiver: `complete_request` (the notify function) ends the request and puts a
wake-up on the webhook queue; `deliver_webhook` (the webhook function) is the only code that signs and sends a
webhook, one POST per wake-up, within a short timeout, and schedules its own retries through the queue. The
request's document is the truth (attempts, the next attempt's time, the claim), so the cap on attempts and on
the window holds whatever the queue repeats. Each tenant's receiver is paused after a failure, so a receiver
that never answers is tried once per pause, not once per pending webhook. Whatever ends a request FAILED
elsewhere (a refused or expired upload, a failed fan-out) calls `ips.shared.failing.fail_request`, which flips the
ledger's counter so the same stream filter brings the request to the notify function."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from ips.completion.csv_output import OutputRow, stream_output_csv
from ips.completion.ports import CompletionPorts, WebhookPorts
from ips.completion.webhook import WebhookSigner, attempt, encode_event
from ips.shared.model import NO_SAVINGS, ImageStatus, RequestStatus, WebhookTask
from ips.shared.output_links import OutputLinks
from ips.shared.ports import Catalog, RequestRecord, TaskQueue

logger = logging.getLogger(__name__)
WEBHOOK_EVENT = "request.completed"


def output_csv_key(request_id: str) -> str:
    """In the private uploads bucket, beside the input it is made from: never under the public asset URLs (the
    processed bucket holds only images), read only through a short-lived presigned GET (output_csv_url)."""
    return f"{request_id}/output.csv"


def webhook_message_id(request_id: str) -> str:
    # Stable per request, so every retry (and any re-run of this step) carries the same id.
    return f"msg_{request_id}"


def complete_request(request_id: str, ports: CompletionPorts) -> RequestStatus | None:
    """Idempotent: a request's final state is set once and never overwritten; a second run queues its webhook
    again, which is harmless (it is delivered once). A request that ended FAILED only has its webhook queued."""
    record = ports.catalog.get(request_id)
    if record is not None and record.status is RequestStatus.FAILED:
        _ended(record, ports)
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
    _ended(record, ports)
    return status


def _ended(record: RequestRecord, ports: CompletionPorts) -> None:
    """Every ended request comes here once or more: its images leave flight (once), and its webhook, unless
    delivered, gets a wake-up on the webhook queue (a duplicate wake-up is dropped there)."""
    ports.allowance.release(record.request_id)
    if record.webhook_url and not (record.webhook or {}).get("delivered"):
        ports.webhooks.send([WebhookTask(record.request_id).to_message()])


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


class Step(StrEnum):
    """What a wake-up of a webhook delivery did."""

    DELIVERED = "DELIVERED"
    RETRY = "RETRY"  # the attempt failed: the next one is scheduled
    WAITING = "WAITING"  # not due yet (backoff, the receiver's pause, another sender's claim): woken again then
    GAVE_UP = "GAVE_UP"  # out of attempts or past the window (or refused for good): recorded, never sent again
    DONE = "DONE"  # nothing to do: delivered, given up, no webhook, or a superseded wake-up


def receiver_of(record: RequestRecord) -> str:
    """Whose receiver: the tenant and the URL's origin (one tenant's receivers never pause another's)."""
    url = urlsplit(record.webhook_url or "")
    return f"{record.tenant} {url.scheme.lower()}://{url.netloc.lower()}"


def deliver_webhook(task: WebhookTask, ports: WebhookPorts) -> Step:
    """One wake-up of the request's webhook: at most one POST, when the document allows it now, and the next
    wake-up scheduled on the queue when something is left to do (the queue delays a message 15 minutes at most:
    a longer wait is made of several wake-ups)."""
    request_id = task.request_id
    record = ports.catalog.get(request_id)
    if record is None or not record.status.is_final or not record.webhook_url:
        return Step.DONE
    state = record.webhook or {}
    if state.get("delivered") or state.get("gave_up") or state.get("wake") != task.wake:
        return Step.DONE  # a wake-up the document no longer expects: another one carries the delivery on
    signer = webhook_signer(record, ports)
    if signer is None:
        logger.error("a webhook is due but WEBHOOK_SECRET is not set", extra={"request_id": request_id})
        return Step.DONE
    now = ports.clock()
    window_end = (record.completed_at or now) + timedelta(seconds=ports.policy.resend_window_s)
    if int(state.get("attempts") or 0) >= ports.policy.retry.attempts or now >= window_end:
        return _give_up(request_id, state, ports)
    waits = [state.get("next_attempt_at"), record.webhook_claim_until]
    due = max((moment for moment in waits if moment is not None), default=now)
    if due <= now:
        due = ports.receivers.admit(receiver_of(record), now, ports.policy.lease_s) or now
    if due > now:
        _wake(task, due, ports)
        return Step.WAITING
    number = ports.catalog.claim_webhook(request_id, ports.policy.lease_s, now)
    if number is None:  # another wake-up of the same delivery took it first: come back when its claim ends
        _wake(task, now + timedelta(seconds=ports.policy.lease_s), ports)
        return Step.WAITING
    return _attempt(record, signer, number, now, window_end, ports)


def _attempt(
    record: RequestRecord, signer: WebhookSigner, number: int, now: datetime, window_end: datetime, ports: WebhookPorts
) -> Step:
    request_id, receiver = record.request_id, receiver_of(record)
    body = encode_event(WEBHOOK_EVENT, webhook_data(record, ports.links), int(now.timestamp()))
    url = record.webhook_url or ""
    result = attempt(ports.poster, signer, url, webhook_message_id(request_id), body, timeout=ports.policy.timeout_s)
    outcome: dict[str, Any] = {"delivered": result.delivered, "last_status": result.status, "last_error": result.error}
    extra = {"request_id": request_id, "attempt": number, **outcome}
    if result.delivered:
        ports.catalog.record_webhook(request_id, {**outcome, "next_attempt_at": None})
        ports.receivers.answered(receiver)
        logger.info("webhook delivered", extra=extra)
        return Step.DELIVERED
    if not result.permanent:  # an address refused for good says nothing about the receiver's health
        ports.receivers.failed(receiver, now, ports.policy.retry)
    retry_at = now + timedelta(seconds=ports.policy.retry.delay(number))
    if result.permanent or number >= ports.policy.retry.attempts or retry_at >= window_end:
        ports.catalog.record_webhook(request_id, {**outcome, "next_attempt_at": None, "gave_up": True})
        logger.error("webhook given up", extra=extra)
        return Step.GAVE_UP
    wake = secrets.token_urlsafe(12)
    ports.catalog.record_webhook(request_id, {**outcome, "next_attempt_at": retry_at, "wake": wake})
    _wake(WebhookTask(request_id, wake), retry_at, ports)
    logger.warning("webhook attempt failed; retried later", extra={**extra, "retry_at": retry_at.isoformat()})
    return Step.RETRY


def _give_up(request_id: str, state: dict[str, Any], ports: WebhookPorts) -> Step:
    ports.catalog.record_webhook(
        request_id,
        {
            "delivered": False,
            "last_status": state.get("last_status"),
            "last_error": state.get("last_error"),
            "next_attempt_at": None,
            "gave_up": True,
        },
    )
    logger.error("webhook given up: out of attempts or past its window", extra={"request_id": request_id})
    return Step.GAVE_UP


def _wake(task: WebhookTask, at: datetime, ports: WebhookPorts) -> None:
    ports.queue.send_after(task.to_message(), max(0.0, (at - ports.clock()).total_seconds()))


def wake_webhook(request_id: str, now: datetime, catalog: Catalog, queue: TaskQueue) -> None:
    """Wake a webhook whose wake-up was lost (the reconciler): a new expected wake-up, due now, on the queue.
    Any older one still travelling is superseded and dropped where it lands."""
    wake = secrets.token_urlsafe(12)
    catalog.reschedule_webhook(request_id, now, wake)
    queue.send([WebhookTask(request_id, wake).to_message()])
