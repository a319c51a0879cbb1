"""Accept a CSV: validate it whole, then store it, create the request and fan its images out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ips.context import Context
from ips.csv_input import ProductRow, parse_products_csv, url_problem
from ips.errors import InvalidInput, Problem
from ips.model import ImageTask, RequestStatus
from ips.outbound import FetchError
from ips.ports import RequestRecord

WEBHOOK_FIELD = "webhookUrl"


@dataclass(frozen=True)
class Accepted:
    request_id: str
    status: RequestStatus
    total_products: int
    total_images: int


def input_csv_key(request_id: str) -> str:
    return f"{request_id}/input.csv"


def validate_webhook_url(url: str, context: Context) -> None:
    reason = url_problem(url)
    if reason is None:
        try:
            context.backends.check_webhook_url(url)
        except FetchError as exc:
            reason = str(exc)
    if reason is not None:
        raise InvalidInput(
            "WEBHOOK_URL_INVALID",
            "The webhook URL is refused.",
            [Problem(None, WEBHOOK_FIELD, "WEBHOOK_URL_INVALID", reason)],
        )


def accept_csv(data: bytes, tenant: str, webhook_url: str | None, context: Context) -> Accepted:
    """Raises InvalidInput (nothing stored, nothing enqueued) or returns the accepted request."""
    if webhook_url:
        validate_webhook_url(webhook_url, context)
    products = parse_products_csv(data, context.settings.csv_limits)
    request_id = str(uuid.uuid4())
    backends = context.backends
    backends.uploads.put(input_csv_key(request_id), data, "text/csv")
    total_images = sum(len(product.image_urls) for product in products)
    backends.catalog.create(
        RequestRecord(
            request_id=request_id,
            tenant=tenant,
            status=RequestStatus.PENDING,
            created_at=backends.clock(),
            total_products=len(products),
            total_images=total_images,
            webhook_url=webhook_url or None,
        ),
        products,
    )
    try:
        backends.ledger.open(request_id, total_images)
        backends.queue.send([task.to_message() for task in image_tasks(request_id, products)])
    except Exception as exc:
        # The request exists but could not be fanned out whole: end it FAILED rather than leave it pending.
        backends.catalog.mark_failed(request_id, "FAN_OUT_FAILED", f"Could not queue the images: {type(exc).__name__}")
        raise
    return Accepted(request_id, RequestStatus.PENDING, len(products), total_images)


def image_tasks(request_id: str, products: list[ProductRow]) -> list[ImageTask]:
    return [
        ImageTask(request_id, product.row, index, url)
        for product in products
        for index, url in enumerate(product.image_urls)
    ]
