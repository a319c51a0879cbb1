"""The small interfaces the domain needs from the outside world; adapters implement them, tests swap them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ips.csv_input import ProductRow
from ips.model import Counts, ImageOutcome, ImageTask, RequestStatus
from ips.outbound import Fetched


class BlobStore(Protocol):
    """One bucket."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...


class TaskQueue(Protocol):
    def send(self, bodies: Sequence[str]) -> None: ...


class Fetcher(Protocol):
    def fetch(self, url: str) -> Fetched: ...


@dataclass(frozen=True)
class CountResult:
    counted: bool  # False when this image had been counted before (a redelivery)
    completed: bool  # True when this count finished the request


class Ledger(Protocol):
    """Exact per-request counters; each image is counted once, and the last count flips the request complete."""

    def open(self, request_id: str, total: int) -> None: ...
    def count(self, task: ImageTask, succeeded: bool) -> CountResult: ...
    def counts(self, request_id: str) -> Counts | None: ...
    def claim_notification(self, request_id: str, lease_seconds: int) -> bool: ...
    def finish_notification(self, request_id: str) -> None: ...


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    tenant: str
    status: RequestStatus
    created_at: datetime
    total_products: int
    total_images: int
    webhook_url: str | None
    completed_at: datetime | None = None
    succeeded: int | None = None
    failed: int | None = None
    output_csv_key: str | None = None
    webhook: dict[str, Any] | None = None
    error: dict[str, str] | None = None  # why a FAILED request failed


@dataclass(frozen=True)
class ProductRecord:
    row: int
    serial_number: str
    product_name: str
    input_urls: list[str]
    images: list[ImageOutcome | None]  # None while the image is pending


class Catalog(Protocol):
    """The product records (MongoDB): the facts of each image, and the request's final state."""

    def create(self, record: RequestRecord, products: Sequence[ProductRow]) -> None: ...
    def get(self, request_id: str) -> RequestRecord | None: ...
    def record_image(self, task: ImageTask, outcome: ImageOutcome) -> ImageOutcome:
        """Store the image's terminal state unless one is stored already; returns the stored one."""
        ...

    def products(self, request_id: str) -> Iterator[ProductRecord]: ...
    def finalise(
        self, request_id: str, status: RequestStatus, counts: Counts, output_csv_key: str, at: datetime
    ) -> None: ...
    def mark_failed(self, request_id: str, code: str, message: str) -> None: ...
    def record_webhook(self, request_id: str, delivery: dict[str, Any]) -> None: ...
