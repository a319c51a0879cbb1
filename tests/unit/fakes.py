"""In-memory stand-ins for the ports the image use case needs, for domain unit tests (no AWS, no MongoDB)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ips.context import Backends, Context, Settings
from ips.fetching import Fetched, FetchError
from ips.model import NO_SAVINGS, ImageOutcome, ImageTask, Savings
from ips.ports import CountResult, ReuseEntry, SourceValidators


class MemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.copies = 0

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (data, content_type)

    def get(self, key: str) -> bytes:
        return self.objects[key][0]

    def copy(self, source_key: str, key: str, content_type: str) -> bool:
        if source_key not in self.objects:
            return False
        self.copies += 1
        self.objects[key] = (self.objects[source_key][0], content_type)
        return True


class MemoryReuseIndex:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str], ReuseEntry] = {}

    def find_by_url(self, tenant: str, options_key: str, url: str) -> ReuseEntry | None:
        return self.entries.get((tenant, options_key, url))

    def find_by_content(self, tenant: str, options_key: str, content_sha256: str) -> ReuseEntry | None:
        return next(
            (
                entry
                for (owner, key, _), entry in self.entries.items()
                if (owner, key, entry.content_sha256) == (tenant, options_key, content_sha256)
            ),
            None,
        )

    def remember(self, entry: ReuseEntry) -> None:
        self.entries[(entry.tenant, entry.options_key, entry.url)] = entry


class MemoryFetcher:
    """Serves bodies by URL and counts what it was asked for."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.requests: list[str] = []

    def fetch(self, url: str, validators: SourceValidators | None = None, timeout: float | None = None) -> Fetched:
        self.requests.append(url)
        if url not in self.bodies:
            raise FetchError("HTTP_STATUS", f"HTTP 404 from {url}", permanent=True)
        etag = f'"{hash(self.bodies[url])}"'
        if validators is not None and validators.etag == etag:
            return Fetched(b"", None, url, 304, etag)
        return Fetched(self.bodies[url], "image/png", url, 200, etag)


class MemoryCatalog:
    def __init__(self) -> None:
        self.images: dict[tuple[str, int, int], ImageOutcome] = {}

    def record_image(self, task: ImageTask, outcome: ImageOutcome) -> ImageOutcome:
        return self.images.setdefault((task.request_id, task.row, task.index), outcome)


@dataclass
class MemoryLedger:
    counted: dict[tuple[str, int, int], Savings] = field(default_factory=dict)

    def count(self, task: ImageTask, succeeded: bool, savings: Savings = NO_SAVINGS) -> CountResult:
        key = (task.request_id, task.row, task.index)
        if key in self.counted:
            return CountResult(counted=False, completed=False)
        self.counted[key] = savings
        return CountResult(counted=True, completed=False)


@dataclass
class Fakes:
    fetcher: MemoryFetcher
    processed: MemoryBlobStore = field(default_factory=MemoryBlobStore)
    reuse: MemoryReuseIndex = field(default_factory=MemoryReuseIndex)
    catalog: MemoryCatalog = field(default_factory=MemoryCatalog)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    now: datetime = datetime(2026, 12, 1, tzinfo=UTC)

    def context(self, clock: Callable[[], datetime] | None = None) -> Context:
        def unused(*args: object) -> None:
            raise AssertionError("not used by the image use case")

        backends = Backends(
            uploads=unused,  # type: ignore[arg-type]
            processed=self.processed,
            queue=unused,  # type: ignore[arg-type]
            chunks=unused,  # type: ignore[arg-type]
            chunk_progress=unused,  # type: ignore[arg-type]
            ledger=self.ledger,  # type: ignore[arg-type]
            catalog=self.catalog,  # type: ignore[arg-type]
            fetcher=self.fetcher,
            webhooks=unused,  # type: ignore[arg-type]
            secret_generations=unused,  # type: ignore[arg-type]
            quotas=unused,  # type: ignore[arg-type]
            check_webhook_url=unused,
            clock=clock or (lambda: self.now),
            reuse=self.reuse,
        )
        return Context(Settings(asset_base_url="http://assets.invalid"), backends)
