"""The ports several use cases share (the catalog, the ledger, the buckets, the queues, each chunk's progress, the
tenants' quota counters) and the records they carry; each use case's own ports are in ips/<use case>/ports.py.
Adapters (ips_adapters) implement them; tests swap them for the fakes (ips/shared/fakes.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ips.shared.csv_input import ProductRow
from ips.shared.errors import Problem
from ips.shared.model import NO_SAVINGS, Counts, ImageOutcome, ImageTask, RequestStatus, Savings
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions

Clock = Callable[[], datetime]  # now, as an aware UTC datetime (tests move it)


def utc_now() -> datetime:
    return datetime.now(UTC)


class BlobStore(Protocol):
    """One bucket."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def copy(self, source_key: str, key: str, content_type: str) -> bool:
        """Copy an object within the bucket (server-side); False when the source does not exist."""

    def put_stream(self, key: str, pieces: Iterable[bytes], content_type: str) -> None:
        """Store an object of any size from pieces, holding about one part at a time (multipart upload)."""
        ...


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


@dataclass(frozen=True)
class StoredObject:
    size: int
    etag: str  # S3's, without its quotes: names one content of the key


class ObjectChanged(Exception):
    """The object is no longer the version it was pinned to (a precondition on its ETag failed)."""


class UploadStore(BlobStore, Protocol):
    """The uploads bucket: also read in pieces, and written straight by clients through presigned POSTs."""

    def get_range(self, key: str, start: int, end: int) -> bytes: ...
    def stream(self, key: str) -> Iterable[bytes]: ...
    def head(self, key: str) -> StoredObject | None: ...
    def copy_pinned(self, source: str, etag: str, target: str) -> None:
        """Copy `source` to `target` only if it still has `etag`; raises ObjectChanged otherwise."""
        ...

    def presigned_post(self, key: str, max_bytes: int, expires_s: int, content_type: str) -> PresignedPost: ...
    def presigned_get(self, key: str, expires_s: int) -> str:
        """A URL that reads one object for `expires_s` seconds (the bucket itself is never public)."""
        ...


class TaskQueue(Protocol):
    def send(self, bodies: Sequence[str]) -> None: ...
    def delay(self, receipt_handle: str, seconds: float) -> None:
        """Make a received message visible again only after `seconds` (a source host asked us to wait)."""
        ...

    def send_after(self, body: str, seconds: float) -> None:
        """Send one message that becomes visible after `seconds` (at most SQS's 15 minutes: a longer wait is
        the receiver's to make up, by sending itself on again)."""
        ...

    def backlog(self) -> int:
        """About how many messages the queue holds: waiting, in flight or delayed (SQS's approximate counts)."""
        ...


class ChunkProgress(Protocol):
    """How many of a chunk's image messages were sent, so a redelivered chunk goes on from there."""

    def sent(self, request_id: str, first_row: int) -> int:
        """0 for a chunk never started."""
        ...

    def advance(self, request_id: str, first_row: int, sent: int) -> None:
        """Record that the chunk's first `sent` image messages were sent; never moves back (a slower, overlapping
        delivery of the same chunk cannot undo a faster one's progress)."""
        ...


@dataclass(frozen=True)
class CountResult:
    counted: bool  # False when this image had been counted before (a redelivery)
    completed: bool  # True when this count finished the request


@dataclass(frozen=True)
class ImageCount:
    """One image to count: whether it succeeded, and its bytes in/out (and whether it was reused)."""

    task: ImageTask
    succeeded: bool
    savings: Savings = NO_SAVINGS


class Ledger(Protocol):
    """Exact per-request counters; each image is counted once, and the last count flips the request complete."""

    def open(self, request_id: str, total: int, at: datetime) -> bool:
        """Create the counter, its progress at `at`; False when it already exists (a repeated fan-out)."""
        ...

    def count_many(self, counts: Sequence[ImageCount], at: datetime) -> list[CountResult]:
        """Count each image once (its savings summed in the same write), a batch's images together, each
        request's progress moved to `at`; one result per item, in order (the same image twice counts once). A
        request whose last image this call counted, or finds counted, is flipped complete, once whoever flips it."""
        ...

    def counts(self, request_id: str) -> Counts | None: ...
    def fail(self, request_id: str, at: datetime) -> bool:
        """Hand a request that ended FAILED to the notify path (the same stream filter as completion)."""
        ...

    def touch(self, request_id: str, at: datetime) -> None:
        """Mark the request as moving at `at` (work was re-queued), so it is not taken for stalled again at once."""
        ...


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    tenant: str
    status: RequestStatus
    created_at: datetime
    total_products: int
    total_images: int
    webhook_url: str | None
    input_key: str | None = None
    asset_salt: str = ""  # secret, random per request: what makes its image keys unguessable (ImageTask.output_key)
    upload_expires_at: datetime | None = None  # set while a presigned upload is awaited
    completed_at: datetime | None = None
    succeeded: int | None = None
    failed: int | None = None
    output_csv_key: str | None = None
    webhook: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # why a FAILED request failed: code, message, problems
    options: ImageOptions = DEFAULT_OPTIONS
    savings: Savings | None = None  # set when the request completes (from the counter)
    deadline_at: datetime | None = None  # by then it has ended, whatever failed (the reconciler sees to it)
    # The end of the last store outage its deadline was moved for (the clock stops while the stores are down).
    paused_through: datetime | None = None
    webhook_claim_until: datetime | None = None  # a webhook sender's live claim, until then

    @property
    def awaiting_upload(self) -> bool:
        return self.upload_expires_at is not None and not self.status.is_final


@dataclass(frozen=True)
class ProductRecord:
    row: int
    serial_number: str
    product_name: str
    input_urls: list[str]
    images: list[ImageOutcome | None]  # None while the image is pending


class Catalog(Protocol):
    """The product records (MongoDB): the facts of each image, and the request's state."""

    def create(self, record: RequestRecord) -> None: ...
    def get(self, request_id: str) -> RequestRecord | None: ...
    def upload_arrived(
        self, request_id: str, input_key: str, total_products: int, total_images: int, deadline_at: datetime
    ) -> bool:
        """Record that an awaited upload was accepted; False if it was not awaited any more."""
        ...

    def add_products(self, request_id: str, products: Sequence[ProductRow]) -> None:
        """Idempotent: products already added are left as they are."""
        ...

    def record_images(self, outcomes: Sequence[tuple[ImageTask, ImageOutcome]]) -> list[ImageOutcome | None]:
        """Store each image's terminal state unless one is stored already, a batch's images in one write; returns
        the stored state of each, in order (None for an image the request does not have)."""
        ...

    def note_failed_delivery(self, task: ImageTask, reason: str) -> None:
        """Remember why a delivery of a still-pending image failed (its last error, kept until it is terminal)."""
        ...

    def last_error(self, task: ImageTask) -> str | None:
        """The reason the image's last failed delivery gave; None when none was noted (or it is terminal)."""
        ...

    def products(self, request_id: str, after_row: int = 0, limit: int | None = None) -> Iterator[ProductRecord]: ...
    def finalise(
        self, request_id: str, status: RequestStatus, counts: Counts, output_csv_key: str, at: datetime
    ) -> bool:
        """Set the final status unless the request already ended (a final state is never overwritten)."""
        ...

    def mark_failed(
        self,
        request_id: str,
        code: str,
        message: str,
        at: datetime,
        problems: Sequence[Problem] = (),
        *,
        omitted: int = 0,
    ) -> bool:
        """End a request FAILED at `at` unless it already ended; True when this call ended it."""
        ...

    def extend_deadline(
        self, request_id: str, deadline_at: datetime, paused_through: datetime, *, was: datetime | None
    ) -> bool:
        """Move an open request's deadline for a store outage that ended at `paused_through`, only if the last
        outage it was moved for is still `was` (so a round run twice moves it once)."""
        ...

    def claim_webhook(self, request_id: str, lease_seconds: int, now: datetime) -> int | None:
        """Take the right to make the webhook's next attempt: only when it is neither delivered nor given up, its
        next attempt is due and no other holder's claim is live (an expired one, a crashed sender's, is retaken).
        The attempt is counted now, before it is made (a sender that dies mid-POST used it). Its number, or None."""
        ...

    def record_webhook(self, request_id: str, outcome: dict[str, Any]) -> None:
        """Store an attempt's outcome (delivered, last_status, last_error, next_attempt_at, gave_up, and `wake`:
        the wake-up now expected) beside the attempts counted, and release the claim."""
        ...

    def reschedule_webhook(self, request_id: str, at: datetime, wake: str) -> None:
        """Make a webhook that is neither delivered nor given up due at `at`, expecting the wake-up `wake` (the
        reconciler, replacing a lost one)."""
        ...

    def open_requests(self) -> Iterator[RequestRecord]:
        """Requests that have not ended (the reconciler's round)."""
        ...

    def undelivered_webhooks(self, ended_after: datetime, due_before: datetime, now: datetime) -> Iterator[str]:
        """Requests ended since `ended_after` with a webhook URL, neither delivered nor given up, not claimed by a
        live holder, whose next attempt (or, never attempted, their end) was due before `due_before`."""
        ...


class Quotas(Protocol):
    """Per-tenant image counters: images accepted per day and images in flight."""

    def usage(self, tenant: str, day: str) -> tuple[int, int]:
        """(images accepted on `day`, images in flight)."""
        ...

    def reserve(self, tenant: str, request_id: str, images: int, per_day: int, in_flight: int, day: str) -> str | None:
        """Count the request's images if both limits allow; None when counted (or counted before for this
        request), else the limit that refused ("perDay" or "inFlight") and nothing counted."""
        ...

    def release(self, request_id: str) -> None:
        """Take the request's images out of flight, once."""
        ...

    def charge(self, task: ImageTask, images: int, per_day: int, day: str) -> bool:
        """Add `images` to the task's tenant's images of `day` if that stays within `per_day`, once per task; True
        when charged (now, or before for this task), False when the limit refused and nothing was charged."""
        ...
