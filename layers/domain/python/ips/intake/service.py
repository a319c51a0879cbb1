"""Accept a CSV (in the request body, or uploaded straight to S3), validate it whole, then fan it out.

Accepting costs validation, not enqueueing: the file is cut into chunks of rows (byte ranges, sized by their
images) and one message per chunk goes on the chunks queue; the expand function turns each into product records
and image tasks (ips.expansion.service), in parallel."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ips.intake.ports import IntakePorts, UrlCheck
from ips.shared.csv_input import CsvPlan, byte_lines, plan_csv, url_problem
from ips.shared.errors import InvalidInput, Problem
from ips.shared.failing import fail_request
from ips.shared.fetching import FetchError
from ips.shared.model import ChunkTask, RequestStatus
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions
from ips.shared.ports import ObjectChanged, PresignedPost, RequestRecord
from ips.shared.quotas import QuotaExceeded

logger = logging.getLogger(__name__)
WEBHOOK_FIELD = "webhookUrl"
INCOMING_PREFIX = "incoming/"
CSV_CONTENT_TYPE = "text/csv"


@dataclass(frozen=True)
class Accepted:
    request_id: str
    status: RequestStatus
    total_products: int
    total_images: int


@dataclass(frozen=True)
class UploadSlot:
    request_id: str
    post: PresignedPost
    expires_in: int
    max_bytes: int


def input_csv_key(request_id: str) -> str:
    return f"{request_id}/input.csv"


def pinned_input_key(request_id: str, etag: str) -> str:
    """The copy of a presigned upload that ingestion validated and the chunks read: named by its content's ETag and
    out of the POST policy's reach, so a second upload through the same policy cannot change what is processed."""
    return f"{request_id}/input-{etag}.csv"


def incoming_key(request_id: str) -> str:
    """Where a presigned upload lands; the bucket notification on this prefix starts the ingestion."""
    return f"{INCOMING_PREFIX}{request_id}.csv"


def request_id_of_incoming(key: str) -> str | None:
    name = key.removeprefix(INCOMING_PREFIX)
    if key == name or not name.endswith(".csv"):
        return None
    return name.removesuffix(".csv")


def validate_webhook_url(url: str, check_url: UrlCheck) -> None:
    reason = url_problem(url)
    if reason is None:
        try:
            check_url(url)
        except FetchError as exc:
            reason = str(exc)
    if reason is not None:
        raise InvalidInput(
            "WEBHOOK_URL_INVALID",
            "The webhook URL is refused.",
            [Problem(None, WEBHOOK_FIELD, "WEBHOOK_URL_INVALID", reason)],
        )


def accept_csv(
    data: bytes,
    tenant: str,
    webhook_url: str | None,
    ports: IntakePorts,
    options: ImageOptions = DEFAULT_OPTIONS,
    *,
    check_url: UrlCheck,
) -> Accepted:
    """The direct path. Raises InvalidInput or QuotaExceeded (nothing stored, nothing enqueued) or returns the
    accepted request. `check_url` refuses a webhook URL we must not call."""
    if webhook_url:
        validate_webhook_url(webhook_url, check_url)
    plan = plan_csv(byte_lines([data]), ports.policy.csv_limits, ports.policy.chunk_images)
    request_id, salt = str(uuid.uuid4()), new_asset_salt()
    ports.allowance.reserve(tenant, request_id, plan.total_images)
    try:
        _store_and_fan_out(data, tenant, webhook_url, plan, request_id, salt, ports, options)
    except Exception:
        ports.allowance.release(request_id)  # not accepted: its images do not count as in flight
        raise
    return Accepted(request_id, RequestStatus.PENDING, plan.total_products, plan.total_images)


def _store_and_fan_out(
    data: bytes,
    tenant: str,
    webhook_url: str | None,
    plan: CsvPlan,
    request_id: str,
    salt: str,
    ports: IntakePorts,
    options: ImageOptions,
) -> None:
    key = input_csv_key(request_id)
    ports.uploads.put(key, data, CSV_CONTENT_TYPE)
    now = ports.clock()
    ports.catalog.create(
        RequestRecord(
            request_id=request_id,
            tenant=tenant,
            status=RequestStatus.PENDING,
            created_at=now,
            total_products=plan.total_products,
            total_images=plan.total_images,
            webhook_url=webhook_url or None,
            input_key=key,
            asset_salt=salt,
            options=options,
            deadline_at=ports.policy.deadlines.deadline(now, plan.total_images),
        )
    )
    fan_out(request_id, key, plan, salt, ports, tenant=tenant, options=options)


def create_upload(
    tenant: str,
    webhook_url: str | None,
    ports: IntakePorts,
    options: ImageOptions = DEFAULT_OPTIONS,
    *,
    check_url: UrlCheck,
) -> UploadSlot:
    """The presigned path, step one: a request waiting for its file, and a POST the client sends it with."""
    if webhook_url:
        validate_webhook_url(webhook_url, check_url)
    policy = ports.policy
    ports.allowance.check(tenant)  # the images are counted at ingestion; a key with no room gets no slot
    request_id = str(uuid.uuid4())
    now = ports.clock()
    ports.catalog.create(
        RequestRecord(
            request_id=request_id,
            tenant=tenant,
            status=RequestStatus.PENDING,
            created_at=now,
            total_products=0,
            total_images=0,
            webhook_url=webhook_url or None,
            asset_salt=new_asset_salt(),
            upload_expires_at=now + timedelta(seconds=policy.upload_expiry_s),
            options=options,
            # Replaced by one sized to the file when it arrives.
            deadline_at=policy.deadlines.deadline(now + timedelta(seconds=policy.upload_expiry_s), 0),
        )
    )
    max_bytes = policy.presigned_csv_limits.max_bytes
    post = ports.uploads.presigned_post(incoming_key(request_id), max_bytes, policy.upload_expiry_s, CSV_CONTENT_TYPE)
    return UploadSlot(request_id, post, policy.upload_expiry_s, max_bytes)


def ingest_upload(key: str, ports: IntakePorts) -> RequestStatus | None:
    """The presigned path, step two (S3 ObjectCreated): validate the file as a stream, then fan it out or end
    the request FAILED with every problem. Safe to run again for the same object."""
    request_id = request_id_of_incoming(key)
    policy = ports.policy
    record = ports.catalog.get(request_id) if request_id else None
    if record is None or request_id is None:
        logger.warning("an upload for no request", extra={"key": key})
        return None
    if not record.awaiting_upload:
        logger.info("upload already ingested or request ended", extra={"request_id": request_id})
        return record.status
    limits = policy.presigned_csv_limits
    stored = ports.uploads.head(key)
    if stored is None:
        logger.warning("an upload event for an object that is gone", extra={"key": key})
        return None
    pinned = pinned_input_key(request_id, stored.etag)
    try:
        if stored.size > limits.max_bytes:
            # S3 enforces content-length-range on real presigned POSTs; this also holds where it is not enforced.
            raise InvalidInput(
                "CSV_INVALID",
                "The CSV file is invalid.",
                [Problem(None, None, "FILE_TOO_LARGE", f"The file is over {limits.max_bytes} bytes.")],
            )
        # Pin this version: validation and every chunk read the copy, never the live key the policy can rewrite.
        ports.uploads.copy_pinned(key, stored.etag, pinned)
        plan = plan_csv(byte_lines(ports.uploads.stream(pinned)), limits, policy.chunk_images)
        ports.allowance.reserve(record.tenant, request_id, plan.total_images)
    except QuotaExceeded as exc:  # known only now: the request ends FAILED with the code (and its webhook)
        fail_request(request_id, exc.code, exc.message, ports.failing)
        return RequestStatus.FAILED
    except ObjectChanged:
        logger.info("the upload was replaced while ingesting; its own event ingests it", extra={"key": key})
        return None
    except InvalidInput as exc:
        fail_request(request_id, exc.code, exc.message, ports.failing, problems=exc.problems, omitted=exc.omitted)
        return RequestStatus.FAILED
    deadline = policy.deadlines.deadline(ports.clock(), plan.total_images)
    if ports.catalog.upload_arrived(request_id, pinned, plan.total_products, plan.total_images, deadline):
        fan_out(request_id, pinned, plan, record.asset_salt, ports, tenant=record.tenant, options=record.options)
    else:  # a second upload through the same policy, or a redelivered event: what was ingested stays
        logger.info("upload already ingested; this write is ignored", extra={"request_id": request_id})
    return RequestStatus.PENDING


class OverdueUpload(StrEnum):
    EXPIRED = "EXPIRED"  # no file came: ended FAILED, UPLOAD_EXPIRED (its webhook through notify)
    INGESTED = "INGESTED"  # a file is there that was never ingested: ingested now


def settle_overdue_upload(record: RequestRecord, now: datetime, ports: IntakePorts) -> OverdueUpload | None:
    """A presigned upload still awaited past its expiry + UPLOAD_GRACE_SECONDS (S3 accepts a POST signed before
    the expiry, and its event's ingestion may still be running until then): with no file, the request ends
    FAILED, UPLOAD_EXPIRED; with one, whose ingestion failed every try or whose event was lost, it is ingested
    now (ingestion is idempotent). None when neither was done (not overdue, or ended since)."""
    expires = record.upload_expires_at
    if not record.awaiting_upload or expires is None:
        return None
    if now <= expires + timedelta(seconds=ports.policy.upload_grace_s):
        return None
    key = incoming_key(record.request_id)
    if ports.uploads.head(key) is not None:
        ingest_upload(key, ports)
        return OverdueUpload.INGESTED
    message = "The CSV was not uploaded before the upload expired."
    return OverdueUpload.EXPIRED if fail_request(record.request_id, "UPLOAD_EXPIRED", message, ports.failing) else None


def new_asset_salt() -> str:
    return secrets.token_urlsafe(16)


def fan_out(
    request_id: str,
    key: str,
    plan: CsvPlan,
    salt: str,
    ports: IntakePorts,
    *,
    tenant: str = "",
    options: ImageOptions = DEFAULT_OPTIONS,
) -> None:
    """Open the counter and put one message per chunk on the chunks queue. Repeating it (a retried ingestion) is
    harmless: a chunk expanded twice sends nothing twice that it recorded as sent (ips.expansion.service)."""
    try:
        ports.ledger.open(request_id, plan.total_images, ports.clock())
        ports.chunks.send(
            [
                ChunkTask(request_id, key, plan.columns, chunk, salt, tenant, options).to_message()
                for chunk in plan.chunks
            ]
        )
    except Exception as exc:
        # The request exists but could not be fanned out: end it FAILED rather than leave it pending.
        fail_request(request_id, "FAN_OUT_FAILED", f"Could not queue the work: {type(exc).__name__}", ports.failing)
        raise
