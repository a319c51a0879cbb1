"""Fakes for the processing use case: image sources, the reuse index, and `ProcessingFakes`, which adds them (and
the processed bucket) to the shared fakes and runs batches as the process function does (test code only: see
ips/shared/fakes.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ips.processing.ports import Fetcher, ProcessingPorts, ReuseEntry, ReuseIndex, ReusePorts, SourceValidators
from ips.processing.service import Delivery, Handled, KnownRequests, run_batch
from ips.shared.fakes import MemoryBlobStore, SharedFakes
from ips.shared.fetching import Fetched, FetchError
from ips.shared.model import ImageTask


class MemoryReuseIndex:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str], ReuseEntry] = {}
        self.lookups = 0  # lookups by URL (a batch's)
        self.content_lookups = 0  # lookups by content hash (a batch's, or part of one)
        self.writes = 0  # remember_many calls

    def find_by_urls(
        self, tenant: str, options_key: str, urls: Collection[str], now: datetime
    ) -> dict[str, ReuseEntry]:
        self.lookups += 1
        found = {url: self.entries.get((tenant, options_key, url)) for url in urls}
        return {url: entry for url, entry in found.items() if entry is not None and entry.expires_at > now}

    def find_by_contents(
        self, tenant: str, options_key: str, digests: Collection[str], now: datetime
    ) -> dict[str, ReuseEntry]:
        self.content_lookups += 1
        live = [
            entry
            for (owner, key, _), entry in self.entries.items()
            if (owner, key) == (tenant, options_key) and entry.content_sha256 in digests and entry.expires_at > now
        ]
        # The one kept longest of a digest's entries, as the index answers.
        return {entry.content_sha256: entry for entry in sorted(live, key=lambda entry: entry.expires_at)}

    def remember_many(self, entries: Sequence[ReuseEntry]) -> None:
        self.writes += 1
        for entry in entries:
            self.entries[(entry.tenant, entry.options_key, entry.url)] = entry


class MemoryFetcher:
    """Serves bodies by URL and counts what it was asked for."""

    def __init__(self, bodies: dict[str, bytes] | None = None) -> None:
        self.bodies = bodies if bodies is not None else {}
        self.requests: list[str] = []

    def fetch(self, url: str, validators: SourceValidators | None = None, timeout: float | None = None) -> Fetched:
        self.requests.append(url)
        if url not in self.bodies:
            raise FetchError("HTTP_STATUS", f"HTTP 404 from {url}", permanent=True)
        etag = f'"{hash(self.bodies[url])}"'
        if validators is not None and validators.etag == etag:
            return Fetched(b"", None, url, 304, etag)
        return Fetched(self.bodies[url], "image/png", url, 200, etag)


@dataclass
class ProcessingFakes(SharedFakes):
    """What processing images runs over: their sources, the processed bucket and the reuse index beside the shared
    stores, and the container's requests seen (`known`)."""

    fetcher: MemoryFetcher = field(default_factory=MemoryFetcher)
    processed: MemoryBlobStore = field(default_factory=MemoryBlobStore)
    reuse: MemoryReuseIndex = field(default_factory=MemoryReuseIndex)
    asset_base_url: str = "http://assets.invalid"  # where processed objects are publicly readable
    known: KnownRequests = field(init=False)  # the process function's container's requests seen

    def __post_init__(self) -> None:
        self.known = KnownRequests(self.catalog)

    def processing(self) -> ProcessingPorts:
        reuse = ReusePorts(self.reuse, self.processed, self.clock, self.asset_base_url)
        return ProcessingPorts(
            self.fetcher, self.processed, self.catalog, self.ledger, reuse, self.allowance(), self.clock
        )

    def run_batch(
        self, *records: ImageTask | Delivery, receive_count: int = 1, decode_deadline: float | None = None
    ) -> list[Handled]:
        """One batch of the images queue, as the process function runs it (a new container each time unless
        `known` is kept: see KnownRequests); what became of each record, in order."""
        deliveries = [
            record if isinstance(record, Delivery) else Delivery(f"m-{n}", record.to_message(), receive_count)
            for n, record in enumerate(records)
        ]
        handled = run_batch(deliveries, self.processing(), self.known, decode_deadline=decode_deadline)
        return [handled[delivery.key] for delivery in deliveries]


# Each fake is its port: mypy checks these assignments, so a fake missing a member of its Protocol or with a
# different signature is a type error here (make lint), not a surprise in a test.
_reuse_index: type[ReuseIndex] = MemoryReuseIndex
_fetcher: type[Fetcher] = MemoryFetcher
