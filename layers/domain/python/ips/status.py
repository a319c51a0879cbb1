"""What a client sees when it polls a request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ips.context import Context
from ips.model import ImageStatus, RequestStatus


def request_status(request_id: str, tenant: str, context: Context) -> dict[str, Any] | None:
    """The status document, or None when the request does not exist for this tenant (never say which)."""
    backends, settings = context.backends, context.settings
    record = backends.catalog.get(request_id)
    if record is None or record.tenant != tenant:
        return None
    if record.status.is_final:
        status = record.status
        total, succeeded, failed = record.total_images, record.succeeded or 0, record.failed or 0
    else:
        counts = backends.ledger.counts(request_id)
        total = record.total_images
        succeeded, failed = (counts.succeeded, counts.failed) if counts else (0, 0)
        # The last image can be counted a moment before the completion step has written the output CSV:
        # the request stays PROCESSING until its output exists.
        status = RequestStatus.PROCESSING if succeeded + failed else RequestStatus.PENDING
    products = [
        {
            "serialNumber": product.serial_number,
            "productName": product.product_name,
            "inputImageUrls": product.input_urls,
            "outputImageUrls": [
                image.output_url if image and image.status is ImageStatus.SUCCEEDED else None
                for image in product.images
            ],
            "errors": [
                {
                    "index": index,
                    "url": product.input_urls[index],
                    "code": image.error_code,
                    "message": image.error_message,
                }
                for index, image in enumerate(product.images)
                if image and image.status is ImageStatus.FAILED
            ],
        }
        for product in backends.catalog.products(request_id)
    ]
    return {
        "requestId": request_id,
        "status": status.value,
        "total": total,
        "succeeded": succeeded,
        "failed": failed,
        "createdAt": _iso(record.created_at),
        "completedAt": _iso(record.completed_at),
        "products": products,
        "outputCsvUrl": settings.asset_url(record.output_csv_key) if record.output_csv_key else None,
        "webhook": record.webhook,
        "error": record.error,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
