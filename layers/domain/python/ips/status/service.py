"""What a client sees when it polls a request: exact counts (one read of the counter) and a page of products.

Reads only. The HTTP shape of it (JSON fields, the page's byte budget) is the API layer's:
ips_runtime.status_document."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ips.shared.errors import InvalidInput, Problem
from ips.shared.model import NO_SAVINGS, RequestStatus, Savings
from ips.shared.ports import ProductRecord, RequestRecord
from ips.status.ports import StatusPorts

MAX_PAGE = 1000
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


@dataclass(frozen=True)
class RequestProgress:
    """A request as its client sees it now: the status and counts it has reached, and a page of its products."""

    record: RequestRecord
    status: RequestStatus
    succeeded: int
    failed: int
    savings: Savings
    products: list[ProductRecord]  # up to the page's limit, in row order, after the cursor's row
    more: bool  # products follow these
    output_csv_url: str | None


def request_status(
    request_id: str, tenant: str, ports: StatusPorts, *, limit: int = MAX_PAGE, after_row: int = 0
) -> RequestProgress | None:
    """The request's progress, or None when the request does not exist for this tenant (never say which)."""
    record = ports.catalog.get(request_id)
    if record is None or record.tenant != tenant:
        return None
    succeeded, failed = record.succeeded or 0, record.failed or 0
    status, savings = record.status, record.savings or NO_SAVINGS
    if not status.is_final:
        counts = ports.ledger.counts(request_id)
        succeeded, failed = (counts.succeeded, counts.failed) if counts else (0, 0)
        savings = counts.savings if counts else NO_SAVINGS
        # The last image can be counted a moment before the completion step has written the output CSV:
        # the request stays PROCESSING until its output exists.
        status = RequestStatus.PROCESSING if succeeded + failed else RequestStatus.PENDING
    page = list(ports.catalog.products(request_id, after_row, limit + 1))
    return RequestProgress(
        record=record,
        status=status,
        succeeded=succeeded,
        failed=failed,
        savings=savings,
        products=page[:limit],
        more=len(page) > limit,
        output_csv_url=ports.links.url(record.output_csv_key) if record.output_csv_key else None,
    )
