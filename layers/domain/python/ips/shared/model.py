"""The request lifecycle's vocabulary, shared by the domain, its adapters and the handlers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ips.shared.csv_input import Chunk, Columns
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions


class RequestStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (RequestStatus.COMPLETED, RequestStatus.COMPLETED_WITH_ERRORS, RequestStatus.FAILED)


class ImageStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class ImageTask:
    """One image of one product: the unit of work on the images queue."""

    request_id: str
    row: int
    index: int  # position of the URL within its product, from 0
    url: str
    salt: str  # the request's secret asset salt (RequestRecord.asset_salt)
    tenant: str = ""  # whose request: the reuse index is per tenant
    options: ImageOptions = DEFAULT_OPTIONS

    @property
    def output_key(self) -> str:
        # Deterministic, so a retried or duplicated message overwrites instead of adding; the tag (an HMAC under
        # the request's secret salt) makes one image's public URL say nothing about another's.
        tag = image_tag(self.salt, self.row, self.index)
        return f"{self.request_id}/{self.row}/{self.index}-{tag}.{self.options.format.extension}"

    def to_message(self) -> str:
        return json.dumps(
            {
                "requestId": self.request_id,
                "row": self.row,
                "index": self.index,
                "url": self.url,
                "salt": self.salt,
                "tenant": self.tenant,
                "options": self.options.to_document(),
            },
            separators=(",", ":"),
        )


def image_tag(salt: str, row: int, index: int) -> str:
    digest = hmac.new(salt.encode(), f"{row}/{index}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


@dataclass(frozen=True)
class ChunkTask:
    """A run of CSV rows to expand into product records and image tasks (the asynchronous fan-out)."""

    request_id: str
    key: str  # the CSV in the uploads bucket
    columns: Columns
    chunk: Chunk
    salt: str  # the request's asset salt, handed on to its image tasks
    tenant: str = ""  # passed on to the chunk's image tasks, with the options
    options: ImageOptions = DEFAULT_OPTIONS

    def to_message(self) -> str:
        chunk = self.chunk
        return json.dumps(
            {
                "type": "chunk",
                "requestId": self.request_id,
                "key": self.key,
                "columns": self.columns.to_dict(),
                "chunk": [chunk.start, chunk.end, chunk.first_row, chunk.products, chunk.images],
                "salt": self.salt,
                "tenant": self.tenant,
                "options": self.options.to_document(),
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class WebhookTask:
    """A wake-up of an ended request's webhook delivery (the webhook queue). What may be done is in the request's
    document (attempts, the next attempt's time, a live claim); `wake` names the one wake-up the document
    expects (None: the first, from notify), so duplicates and superseded wake-ups are dropped, not multiplied."""

    request_id: str
    wake: str | None = None

    def to_message(self) -> str:
        message = {"type": "webhook", "requestId": self.request_id}
        return json.dumps(message | ({"wake": self.wake} if self.wake else {}), separators=(",", ":"))


@dataclass(frozen=True)
class ImageOutcome:
    """The terminal state of one image."""

    status: ImageStatus
    output_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_format: str | None = None
    input_bytes: int | None = None
    output_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    kept_original: bool | None = None
    output_format: str | None = None
    reused: bool | None = None  # True when the output was reused from an earlier request (ips.processing.reuse)

    @property
    def succeeded(self) -> bool:
        return self.status is ImageStatus.SUCCEEDED

    def to_document(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None} | {"status": self.status.value}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ImageOutcome:
        fields: dict[str, Any] = {key: document.get(key) for key in cls.__dataclass_fields__}
        return cls(**{**fields, "status": ImageStatus(document["status"])})

    @classmethod
    def failure(cls, code: str, message: str) -> ImageOutcome:
        return cls(ImageStatus.FAILED, error_code=code, error_message=message)


@dataclass(frozen=True)
class Savings:
    """Sums over a request's succeeded images (kept beside the counts, in the same counter)."""

    bytes_in: int = 0
    bytes_out: int = 0
    reused: int = 0

    @classmethod
    def of(cls, outcome: ImageOutcome) -> Savings:
        if not outcome.succeeded:
            return NO_SAVINGS
        return cls(outcome.input_bytes or 0, outcome.output_bytes or 0, 1 if outcome.reused else 0)

    def to_public(self) -> dict[str, Any]:
        ratio = round(self.bytes_out / self.bytes_in, 4) if self.bytes_in else None
        return {"bytesIn": self.bytes_in, "bytesOut": self.bytes_out, "ratio": ratio}


NO_SAVINGS = Savings()


@dataclass(frozen=True)
class Counts:
    total: int
    succeeded: int
    failed: int
    savings: Savings = NO_SAVINGS
    progress_at: float | None = field(
        default=None, compare=False
    )  # epoch seconds of the last count (or of opening the counter)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def complete(self) -> bool:
        return self.done >= self.total
