"""In-memory stand-ins for the shared ports (ips.shared.ports), and `SharedFakes`, the stores and queues every use
case's fakes start from: no AWS, no MongoDB, no network. Each use case's own ports have their fakes beside them
(`ips/<use case>/fakes.py`), whose class adds them to these and builds that use case's port bundles.

Each keeps the contract its port documents that the use cases rely on (a final state is set once, an image is
counted once, a webhook claim excludes another holder, products come back in row order), and records what it
was asked, so a test can say what a use case did. Test code only: no `fakes.py` is deployed (the domain layer's
asset excludes them, tests/infra/test_stack.py checks it) and no other module imports one
(tests/unit/test_layering.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ips.shared.csv_input import ProductRow
from ips.shared.errors import Problem, failure_record
from ips.shared.failing import FailPorts
from ips.shared.model import Counts, ImageOutcome, ImageTask, RequestStatus, Savings
from ips.shared.output_links import OutputLinks
from ips.shared.ports import (
    Catalog,
    ChunkProgress,
    CountResult,
    ImageCount,
    Ledger,
    ObjectChanged,
    PresignedPost,
    ProductRecord,
    Quotas,
    RequestRecord,
    StoredObject,
    TaskQueue,
    UploadStore,
)
from ips.shared.quotas import Allowance, ImageQuota


class MemoryBlobStore:
    """A bucket (and the uploads bucket's extras: ranges, pinned copies, presigned URLs)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.copies = 0
        self.reads = 0  # get and get_range calls

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (data, content_type)

    def get(self, key: str) -> bytes:
        self.reads += 1
        return self.objects[key][0]

    def copy(self, source_key: str, key: str, content_type: str) -> bool:
        if source_key not in self.objects:
            return False
        self.copies += 1
        self.objects[key] = (self.objects[source_key][0], content_type)
        return True

    def put_stream(self, key: str, pieces: Iterable[bytes], content_type: str) -> None:
        self.objects[key] = (b"".join(pieces), content_type)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.reads += 1
        return self.objects[key][0][start:end]

    def stream(self, key: str) -> Iterator[bytes]:
        data = self.objects[key][0]
        yield from (data[at : at + 64] for at in range(0, len(data), 64))

    def head(self, key: str) -> StoredObject | None:
        if key not in self.objects:
            return None
        data = self.objects[key][0]
        return StoredObject(len(data), f"etag-{hash(data) & 0xFFFFFF:x}")

    def copy_pinned(self, source: str, etag: str, target: str) -> None:
        stored = self.head(source)
        if stored is None or stored.etag != etag:
            raise ObjectChanged(source)
        self.objects[target] = self.objects[source]

    def presigned_post(self, key: str, max_bytes: int, expires_s: int, content_type: str) -> PresignedPost:
        return PresignedPost("http://uploads.invalid/", {"key": key, "max": str(max_bytes)})

    def presigned_get(self, key: str, expires_s: int) -> str:
        return f"http://uploads.invalid/{key}?expires={expires_s}"


class MemoryQueue:
    """What was sent is what the queue holds (a test that loses messages, or has them taken, removes them from
    `sent`); `others`: messages of other requests in it too, for its depth. After `fail_after` sends, every send
    raises (the invocation was killed mid-way), until it is set back to None."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.delayed: list[tuple[str, float]] = []
        self.scheduled: list[tuple[str, float]] = []  # sent with a delay (send_after)
        self.others = 0
        self.sends = 0  # send calls that went through
        self.fail_after: int | None = None

    def send(self, bodies: Sequence[str]) -> None:
        if self.fail_after is not None and self.sends >= self.fail_after:
            raise ConnectionError("the invocation was killed")
        self.sends += 1
        self.sent.extend(bodies)

    def delay(self, receipt_handle: str, seconds: float) -> None:
        self.delayed.append((receipt_handle, seconds))

    def send_after(self, body: str, seconds: float) -> None:
        self.scheduled.append((body, min(900.0, seconds)))

    def backlog(self) -> int:
        return len(self.sent) + self.others


class MemoryChunkProgress:
    """Each chunk's sent count, only ever moved forwards (the port's contract)."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, int], int] = {}

    def sent(self, request_id: str, first_row: int) -> int:
        return self.marks.get((request_id, first_row), 0)

    def advance(self, request_id: str, first_row: int, sent: int) -> None:
        key = (request_id, first_row)
        self.marks[key] = max(self.marks.get(key, 0), sent)


class MemoryCatalog:
    """Requests and their products. An image's first terminal state wins, and so does a request's final one."""

    def __init__(self) -> None:
        self.requests: dict[str, RequestRecord] = {}
        self.rows: dict[str, dict[int, ProductRow]] = {}
        self.images: dict[tuple[str, int, int], ImageOutcome] = {}
        self.image_writes = 0  # record_images calls (a batch's images each)
        self.product_writes = 0  # add_products calls
        self.last_errors: dict[tuple[str, int, int], str] = {}  # a pending image's last failed delivery

    def create(self, record: RequestRecord) -> None:
        assert record.request_id not in self.requests
        self.requests[record.request_id] = record

    def get(self, request_id: str) -> RequestRecord | None:
        return self.requests.get(request_id)

    def upload_arrived(
        self, request_id: str, input_key: str, total_products: int, total_images: int, deadline_at: datetime
    ) -> bool:
        record = self.requests.get(request_id)
        if record is None or not record.awaiting_upload:
            return False
        self.requests[request_id] = replace(
            record,
            input_key=input_key,
            total_products=total_products,
            total_images=total_images,
            upload_expires_at=None,
            deadline_at=deadline_at,
        )
        return True

    def add_products(self, request_id: str, products: Sequence[ProductRow]) -> None:
        self.product_writes += 1
        rows = self.rows.setdefault(request_id, {})
        for product in products:
            rows.setdefault(product.row, product)

    def record_images(self, outcomes: Sequence[tuple[ImageTask, ImageOutcome]]) -> list[ImageOutcome | None]:
        self.image_writes += 1
        stored: list[ImageOutcome | None] = []
        for task, outcome in outcomes:
            key = (task.request_id, task.row, task.index)
            stored.append(self.images.setdefault(key, outcome) if self._has_slot(task) else None)
        return stored

    def note_failed_delivery(self, task: ImageTask, reason: str) -> None:
        if (task.request_id, task.row, task.index) not in self.images:
            self.last_errors[(task.request_id, task.row, task.index)] = reason

    def last_error(self, task: ImageTask) -> str | None:
        key = (task.request_id, task.row, task.index)
        return None if key in self.images else self.last_errors.get(key)

    def _has_slot(self, task: ImageTask) -> bool:
        rows = self.rows.get(task.request_id)
        if not rows:  # the image use case's own tests record images without adding their products
            return True
        product = rows.get(task.row)
        return product is not None and task.index < len(product.image_urls)

    def products(self, request_id: str, after_row: int = 0, limit: int | None = None) -> Iterator[ProductRecord]:
        rows = [
            row for row in sorted(self.rows.get(request_id, {}).values(), key=lambda p: p.row) if row.row > after_row
        ]
        for product in rows[:limit]:
            yield ProductRecord(
                row=product.row,
                serial_number=product.serial_number,
                product_name=product.product_name,
                input_urls=list(product.image_urls),
                images=[self.images.get((request_id, product.row, index)) for index in range(len(product.image_urls))],
            )

    def _end(self, request_id: str, **changes: Any) -> bool:
        record = self.requests.get(request_id)
        if record is None or record.status.is_final:
            return False
        self.requests[request_id] = replace(record, **changes)
        return True

    def finalise(
        self, request_id: str, status: RequestStatus, counts: Counts, output_csv_key: str, at: datetime
    ) -> bool:
        return self._end(
            request_id,
            status=status,
            succeeded=counts.succeeded,
            failed=counts.failed,
            output_csv_key=output_csv_key,
            savings=counts.savings,
            completed_at=at,
        )

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
        error = failure_record(code, message, problems, omitted=omitted)
        return self._end(request_id, status=RequestStatus.FAILED, error=error, upload_expires_at=None, completed_at=at)

    def extend_deadline(
        self, request_id: str, deadline_at: datetime, paused_through: datetime, *, was: datetime | None
    ) -> bool:
        record = self.requests[request_id]
        if record.status.is_final or record.paused_through != was:
            return False
        self.requests[request_id] = replace(record, deadline_at=deadline_at, paused_through=paused_through)
        return True

    def claim_webhook(self, request_id: str, lease_seconds: int, now: datetime) -> int | None:
        record = self.requests[request_id]
        state = dict(record.webhook or {})
        due = state.get("next_attempt_at")
        claimed = record.webhook_claim_until is not None and record.webhook_claim_until >= now
        if state.get("delivered") or state.get("gave_up") or claimed or (due is not None and due > now):
            return None
        state["attempts"] = int(state.get("attempts") or 0) + 1
        until = now + timedelta(seconds=lease_seconds)
        self.requests[request_id] = replace(record, webhook=state, webhook_claim_until=until)
        return int(state["attempts"])

    def record_webhook(self, request_id: str, outcome: dict[str, Any]) -> None:
        record = self.requests[request_id]
        self.requests[request_id] = replace(
            record, webhook={**(record.webhook or {}), **outcome}, webhook_claim_until=None
        )

    def reschedule_webhook(self, request_id: str, at: datetime, wake: str) -> None:
        record = self.requests[request_id]
        state = record.webhook or {}
        if not state.get("delivered") and not state.get("gave_up"):
            self.requests[request_id] = replace(record, webhook={**state, "next_attempt_at": at, "wake": wake})

    def open_requests(self) -> Iterator[RequestRecord]:
        yield from (record for record in list(self.requests.values()) if not record.status.is_final)

    def undelivered_webhooks(self, ended_after: datetime, due_before: datetime, now: datetime) -> Iterator[str]:
        for record in list(self.requests.values()):
            ended, state = record.completed_at, record.webhook or {}
            if not record.status.is_final or ended is None or ended < ended_after or not record.webhook_url:
                continue
            claimed = record.webhook_claim_until is not None and record.webhook_claim_until >= now
            due = state.get("next_attempt_at") or ended
            if not (state.get("delivered") or state.get("gave_up") or claimed) and due < due_before:
                yield record.request_id


@dataclass
class MemoryLedger:
    """Per-request counters; each image counted once, the last count completes the request."""

    counted: dict[tuple[str, int, int], Savings] = field(default_factory=dict)
    counters: dict[str, Counts] = field(default_factory=dict)
    failed_requests: set[str] = field(default_factory=set)
    calls: int = 0  # count_many calls (a batch's images each)
    touched: list[str] = field(default_factory=list)  # touch calls (work re-queued), in order

    def open(self, request_id: str, total: int, at: datetime) -> bool:
        if request_id in self.counters:
            return False
        self.counters[request_id] = Counts(total, 0, 0, progress_at=at.timestamp())
        return True

    def count_many(self, counts: Sequence[ImageCount], at: datetime) -> list[CountResult]:
        self.calls += 1
        return [self._count(item.task, item.succeeded, item.savings, at) for item in counts]

    def _count(self, task: ImageTask, succeeded: bool, savings: Savings, at: datetime) -> CountResult:
        key = (task.request_id, task.row, task.index)
        if key in self.counted:
            return CountResult(counted=False, completed=False)
        self.counted[key] = savings
        counts = self.counters.get(task.request_id)
        if counts is None:  # the image use case's own tests count without opening a counter
            return CountResult(counted=True, completed=False)
        total = counts.savings
        self.counters[task.request_id] = updated = Counts(
            counts.total,
            counts.succeeded + succeeded,
            counts.failed + (not succeeded),
            Savings(
                total.bytes_in + savings.bytes_in, total.bytes_out + savings.bytes_out, total.reused + savings.reused
            ),
            progress_at=at.timestamp(),
        )
        return CountResult(counted=True, completed=updated.complete)

    def counts(self, request_id: str) -> Counts | None:
        return self.counters.get(request_id)

    def fail(self, request_id: str, at: datetime) -> bool:
        self.failed_requests.add(request_id)
        return True

    def touch(self, request_id: str, at: datetime) -> None:
        self.touched.append(request_id)
        counts = self.counters.get(request_id)
        if counts is not None:
            self.counters[request_id] = replace(counts, progress_at=at.timestamp())


class MemoryQuotas:
    def __init__(self) -> None:
        self.reserved: dict[str, tuple[str, int, str]] = {}  # request -> (tenant, images, day)
        self.released: set[str] = set()
        self.charged: dict[tuple[str, int, int], tuple[str, int, str]] = {}  # image -> (tenant, images, day)

    def usage(self, tenant: str, day: str) -> tuple[int, int]:
        mine = [(r, images, d) for r, (t, images, d) in self.reserved.items() if t == tenant]
        work = sum(images for t, images, d in self.charged.values() if t == tenant and d == day)
        today = sum(images for _, images, d in mine if d == day) + work
        in_flight = sum(images for r, images, _ in mine if r not in self.released)
        return today, in_flight

    def charge(self, task: ImageTask, images: int, per_day: int, day: str) -> bool:
        image = (task.request_id, task.row, task.index)
        if image in self.charged:
            return True
        if self.usage(task.tenant, day)[0] + images > per_day:
            return False
        self.charged[image] = (task.tenant, images, day)
        return True

    def reserve(self, tenant: str, request_id: str, images: int, per_day: int, in_flight: int, day: str) -> str | None:
        if request_id in self.reserved:
            return None
        today, flying = self.usage(tenant, day)
        if today + images > per_day:
            return "perDay"
        if flying + images > in_flight:
            return "inFlight"
        self.reserved[request_id] = (tenant, images, day)
        return None

    def release(self, request_id: str) -> None:
        self.released.add(request_id)


@dataclass
class SharedFakes:
    """The stores and queues several use cases share, the tenants' image quotas and a clock a test moves (`now`).
    Each use case's fakes class adds its own ports and policy to these and builds its bundles; a test that runs
    several use cases (the reconciler's) takes a class that inherits from each of theirs."""

    uploads: MemoryBlobStore = field(default_factory=MemoryBlobStore)
    queue: MemoryQueue = field(default_factory=MemoryQueue)  # the images queue
    chunks_queue: MemoryQueue = field(default_factory=MemoryQueue)  # the fan-out's
    webhook_queue: MemoryQueue = field(default_factory=MemoryQueue)  # webhook deliveries' wake-ups
    chunk_progress: MemoryChunkProgress = field(default_factory=MemoryChunkProgress)
    catalog: MemoryCatalog = field(default_factory=MemoryCatalog)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    quotas: MemoryQuotas = field(default_factory=MemoryQuotas)
    image_quota: ImageQuota = field(default_factory=ImageQuota)  # every tenant's, unless it has its own
    tenant_image_quotas: dict[str, ImageQuota] = field(default_factory=dict)  # by tenant
    now: datetime = datetime(2026, 12, 1, tzinfo=UTC)

    def clock(self) -> datetime:
        return self.now

    def open_request(self, request_id: str, total: int = 0, *, tenant: str = "tenant-a") -> None:
        """A request the queues' messages can be for: its record and (with `total`) its counter."""
        record = RequestRecord(request_id, tenant, RequestStatus.PROCESSING, self.now, total, total, None)
        self.catalog.requests.setdefault(request_id, record)
        if total:
            self.ledger.open(request_id, total, self.now)

    def allowance(self) -> Allowance:
        return Allowance(self.quotas, self.clock, self.image_quota, self.tenant_image_quotas)

    def failing(self) -> FailPorts:
        return FailPorts(self.catalog, self.ledger, self.clock)

    def links(self) -> OutputLinks:
        return OutputLinks(self.uploads)


# Each fake is its port: mypy checks these assignments, so a fake missing a member of its Protocol or with a
# different signature is a type error here (make lint), not a surprise in a test.
_upload_store: type[UploadStore] = MemoryBlobStore
_task_queue: type[TaskQueue] = MemoryQueue
_chunk_progress: type[ChunkProgress] = MemoryChunkProgress
_catalog: type[Catalog] = MemoryCatalog
_ledger: type[Ledger] = MemoryLedger
_quotas: type[Quotas] = MemoryQuotas
