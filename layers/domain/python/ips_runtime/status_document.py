"""The status route's JSON: a request's progress (ips.status.service) mapped field by field to the public contract
(ips_runtime.api.StatusResponse, the README's example), never a stored record returned as it is stored.

The document is exactly what the response model serialises (every field, nulls included:
tests/unit/test_status.py checks it), so the byte budget a page is cut to measures the bytes Lambda returns.
Free text from elsewhere (an image's error, the webhook's last error) is cut to MESSAGE_MAX_CHARS."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeGuard

from ips.shared.errors import Problem, listed, shortened
from ips.shared.model import ImageOutcome, ImageStatus
from ips.shared.ports import ProductRecord
from ips.status.service import MAX_CURSOR_ROW, RequestProgress, encode_cursor

# A status page's JSON as a Lambda result carries it: under Lambda's 6 MiB response payload
# (infra.topology.PayloadLimits.page_bytes).
PAGE_MAX_BYTES = 5 * 1024 * 1024 + 100

WAITING_FOR_UPLOAD = "WAITING_FOR_UPLOAD"
SUCCEEDED_DETAILS = ("inputFormat", "inputBytes", "outputFormat", "outputBytes", "width", "height", "reused")


def status_document(progress: RequestProgress, page_max_bytes: int) -> dict[str, Any]:
    """The page holds the progress's products, and fewer when more would pass `page_max_bytes` (under Lambda's
    response payload: 1,000 products of 50 URLs are about 8 MB of JSON, 30 products of 50 URLs of 2,000
    characters 6 MB); `nextCursor` goes on from the last. A page always holds one product at least: the largest
    possible (50 URLs of 2,048 astral characters, 14 bytes each here, every image failed) is under 3 MB."""
    record = progress.record
    products: list[dict[str, Any]] = []
    document: dict[str, Any] = {
        "requestId": record.request_id,
        "status": progress.status.value,
        "detail": WAITING_FOR_UPLOAD if record.awaiting_upload else None,
        "total": record.total_images,
        "succeeded": progress.succeeded,
        "failed": progress.failed,
        "totalProducts": record.total_products,
        "createdAt": _iso(record.created_at),
        "completedAt": _iso(record.completed_at),
        "uploadExpiresAt": _iso(record.upload_expires_at) if record.awaiting_upload else None,
        "options": record.options.to_document(),
        "savings": progress.savings.to_public(),
        "reused": progress.savings.reused,
        "products": products,
        "nextCursor": encode_cursor(MAX_CURSOR_ROW),  # its size, for the budget; set below
        "outputCsvUrl": progress.output_csv_url,
        "webhook": webhook_delivery(record.webhook),
        "error": request_error(record.error),
    }
    used = _encoded_size(document)
    more = progress.more
    for product in progress.products:
        entry = product_entry(product)
        size = _encoded_size(entry) + 1  # and its comma
        if products and used + size > page_max_bytes:
            more = True
            break
        products.append(entry)
        used += size
    document["nextCursor"] = encode_cursor(progress.products[len(products) - 1].row) if more else None
    return document


def webhook_delivery(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """How the webhook is going, as the catalog keeps it (ips.completion.service.deliver_webhook): every attempt made so
    far, the last one's answer, when the next is due; null until the first attempt is counted or scheduled."""
    if stored is None:
        return None
    return {
        "delivered": bool(stored.get("delivered")),
        "attempts": int(stored.get("attempts") or 0),
        "lastStatus": stored.get("last_status"),
        "lastError": shortened(stored["last_error"]) if stored.get("last_error") else None,
        "nextAttemptAt": _iso(stored.get("next_attempt_at")),
        "gaveUp": bool(stored.get("gave_up")),
    }


def request_error(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """Why a FAILED request failed, as the catalog stored it (code, message, its problems)."""
    if stored is None:
        return None
    problems = [
        Problem(item.get("row"), item.get("column"), item["code"], item["message"])
        for item in stored.get("errors") or []
    ]
    kept, omitted = listed(problems, int(stored["errorsOmitted"]))
    return {
        "code": stored["code"],
        "message": shortened(stored["message"]),
        "errors": [asdict(problem) for problem in kept],
        "errorsOmitted": omitted,
    }


def product_entry(product: ProductRecord) -> dict[str, Any]:
    return {
        "serialNumber": product.serial_number,
        "productName": product.product_name,
        "inputImageUrls": product.input_urls,
        "outputImageUrls": [
            image.output_url if image and image.status is ImageStatus.SUCCEEDED else None for image in product.images
        ],
        # Sizes of each stored image and of its source (null while pending or failed): what was saved.
        "inputImageBytes": [image.input_bytes if _succeeded(image) else None for image in product.images],
        "outputImageBytes": [image.output_bytes if _succeeded(image) else None for image in product.images],
        "errors": [
            {
                "index": index,
                "url": product.input_urls[index],
                "code": image.error_code,
                "message": shortened(image.error_message) if image.error_message else image.error_message,
            }
            for index, image in enumerate(product.images)
            if image and image.status is ImageStatus.FAILED
        ],
        "images": [image_detail(image) for image in product.images],
    }


def image_detail(image: ImageOutcome | None) -> dict[str, Any] | None:
    """One image's record: what came in and what went out (null while pending; only its status when failed)."""
    if image is None:
        return None
    if not image.succeeded:
        return {"status": image.status.value, **dict.fromkeys(SUCCEEDED_DETAILS)}
    return {
        "status": image.status.value,
        "inputFormat": image.input_format,
        "inputBytes": image.input_bytes,
        "outputFormat": image.output_format or "JPEG",
        "outputBytes": image.output_bytes,
        "width": image.width,
        "height": image.height,
        "reused": bool(image.reused),
    }


def _encoded_size(value: Any) -> int:
    """Bytes `value` takes in a Lambda result: JSON (ASCII-escaped, as the API serialises it) inside the JSON
    string of the proxy result's body, where each quote and backslash gains a backslash."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return len(text) + text.count('"') + text.count("\\") + 2


def _succeeded(image: ImageOutcome | None) -> TypeGuard[ImageOutcome]:
    return image is not None and image.status is ImageStatus.SUCCEEDED


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
