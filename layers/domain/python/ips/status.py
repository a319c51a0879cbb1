"""What a client sees when it polls a request: exact counts (one read of the counter) and a page of products."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any, TypeGuard

from ips.completion import output_csv_url
from ips.context import Context
from ips.errors import InvalidInput, Problem
from ips.model import NO_SAVINGS, ImageOutcome, ImageStatus, RequestStatus
from ips.ports import ProductRecord

MAX_PAGE = 1000
WAITING_FOR_UPLOAD = "WAITING_FOR_UPLOAD"
# Rows are spreadsheet rows (at most a few hundred thousand); a bound far above that keeps a forged row inside
# MongoDB's 64-bit integers.
MAX_CURSOR_ROW = 2**31 - 1
_CURSOR = re.compile(r"row:(0|[1-9][0-9]{0,9})")  # what encode_cursor writes, up to 10 digits


def encode_cursor(row: int) -> str:
    return base64.urlsafe_b64encode(f"row:{row}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row a cursor this API returned stands for; 400 CURSOR_INVALID for anything else.

    Only the exact form `encode_cursor` writes is accepted (so `row:²`, `row:007`, a 44-digit row or padding
    variants are refused, never turned into a 500 by int() or by MongoDB)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    match = _CURSOR.fullmatch(text)
    if match is not None:
        row = int(match.group(1))
        if row <= MAX_CURSOR_ROW and encode_cursor(row) == cursor:
            return row
    raise InvalidInput(
        "CURSOR_INVALID",
        "The cursor is not one this API returned.",
        [Problem(None, "cursor", "CURSOR_INVALID", "Unknown cursor.")],
    )


def request_status(
    request_id: str, tenant: str, context: Context, *, limit: int = MAX_PAGE, cursor: str | None = None
) -> dict[str, Any] | None:
    """The status document, or None when the request does not exist for this tenant (never say which).

    A page holds up to `limit` products, and fewer when more would pass `Settings.status_page_max_bytes`
    (Lambda's response payload: 1,000 products of 50 URLs are about 8 MB of JSON); `nextCursor` goes on."""
    backends, settings = context.backends, context.settings
    record = backends.catalog.get(request_id)
    if record is None or record.tenant != tenant:
        return None
    after_row = decode_cursor(cursor) if cursor else 0
    total, succeeded, failed = record.total_images, record.succeeded or 0, record.failed or 0
    status, savings = record.status, record.savings or NO_SAVINGS
    if not status.is_final:
        counts = backends.ledger.counts(request_id)
        succeeded, failed = (counts.succeeded, counts.failed) if counts else (0, 0)
        savings = counts.savings if counts else NO_SAVINGS
        # The last image can be counted a moment before the completion step has written the output CSV:
        # the request stays PROCESSING until its output exists.
        status = RequestStatus.PROCESSING if succeeded + failed else RequestStatus.PENDING
    page = list(backends.catalog.products(request_id, after_row, limit + 1))
    more = len(page) > limit
    page = page[:limit]
    document = {
        "requestId": request_id,
        "status": status.value,
        "detail": WAITING_FOR_UPLOAD if record.awaiting_upload else None,
        "total": total,
        "succeeded": succeeded,
        "failed": failed,
        "totalProducts": record.total_products,
        "createdAt": _iso(record.created_at),
        "completedAt": _iso(record.completed_at),
        "uploadExpiresAt": _iso(record.upload_expires_at) if record.awaiting_upload else None,
        "options": record.options.to_document(),
        "savings": savings.to_public(),
        "reused": savings.reused,
        "products": [],
        "nextCursor": encode_cursor(MAX_CURSOR_ROW),  # its size, for the budget; set below
        "outputCsvUrl": output_csv_url(record.output_csv_key, context) if record.output_csv_key else None,
        "webhook": record.webhook,
        "error": record.error,
    }
    used = _encoded_size(document)
    products = document["products"]
    for product in page:
        entry = _product_entry(product)
        size = _encoded_size(entry) + 1  # and its comma
        if products and used + size > settings.status_page_max_bytes:
            more = True
            break
        products.append(entry)
        used += size
    document["nextCursor"] = encode_cursor(page[len(products) - 1].row) if more else None
    return document


def _product_entry(product: ProductRecord) -> dict[str, Any]:
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
                "message": image.error_message,
            }
            for index, image in enumerate(product.images)
            if image and image.status is ImageStatus.FAILED
        ],
        "images": [image_detail(image) for image in product.images],
    }


def _encoded_size(value: Any) -> int:
    """Bytes `value` takes in a Lambda result: JSON (ASCII-escaped, as the API serialises it) inside the JSON
    string of the proxy result's body, where each quote and backslash gains a backslash."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return len(text) + text.count('"') + text.count("\\") + 2


def _succeeded(image: ImageOutcome | None) -> TypeGuard[ImageOutcome]:
    return image is not None and image.status is ImageStatus.SUCCEEDED


def image_detail(image: ImageOutcome | None) -> dict[str, Any] | None:
    """One image's record: what came in and what went out (null while pending)."""
    if image is None:
        return None
    if not image.succeeded:
        return {"status": image.status.value}
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


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None
