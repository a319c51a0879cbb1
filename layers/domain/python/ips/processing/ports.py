"""What processing an image needs from outside: its source (Fetcher), the reuse index, and the bundles the
process function's root builds (ProcessingPorts, ReusePorts)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ips.shared.fetching import Fetched
from ips.shared.imaging import ImageLimits
from ips.shared.model import ImageOutcome
from ips.shared.ports import BlobStore, Catalog, Clock, Ledger
from ips.shared.quotas import Allowance


@dataclass(frozen=True)
class SourceValidators:
    """What a source's server said identifies this version of it (for a conditional GET next time)."""

    etag: str | None = None
    last_modified: str | None = None

    def __bool__(self) -> bool:
        return bool(self.etag or self.last_modified)


class Fetcher(Protocol):
    def fetch(self, url: str, validators: SourceValidators | None = None, timeout: float | None = None) -> Fetched:
        """GET the URL; with validators, conditionally (a 304 answer comes back as a Fetched with no body).
        `timeout` (seconds) shortens the fetcher's own whole-fetch limit, never lengthens it."""
        ...


@dataclass(frozen=True)
class ReuseEntry:
    tenant: str
    options_key: str  # ImageOptions.fingerprint(): equal options make equal outputs
    url: str
    content_sha256: str
    validators: SourceValidators
    output_key: str
    outcome: ImageOutcome  # the succeeded outcome whose output is at output_key
    expires_at: datetime


class ReuseIndex(Protocol):
    """Per tenant: the newest output for each (options, source URL), also found by the source's content hash.
    Every lookup names the tenant; no tenant ever sees another's entries. A batch of images asks and writes it
    once for all of them, never once per image."""

    def find_by_urls(
        self, tenant: str, options_key: str, urls: Collection[str], now: datetime
    ) -> dict[str, ReuseEntry]:
        """The entries live at `now` of those of `urls` that have one, by URL."""
        ...

    def find_by_contents(
        self, tenant: str, options_key: str, digests: Collection[str], now: datetime
    ) -> dict[str, ReuseEntry]:
        """An entry live at `now` for each of the content hashes `digests` that has one, by hash."""
        ...

    def remember_many(self, entries: Sequence[ReuseEntry]) -> None:
        """Insert or replace each entry for its (tenant, options, URL), in one write."""
        ...


@dataclass(frozen=True)
class ReusePorts:
    """What reusing earlier outputs needs. `index` None: every image is fetched and compressed afresh."""

    index: ReuseIndex | None
    processed: BlobStore
    clock: Clock
    asset_base_url: str
    output_retention_days: float = 14  # how long outputs are kept; entries expire a day before them


@dataclass(frozen=True)
class ProcessingPorts:
    """What processing an image needs: its source, where its output goes, where its state and count are kept."""

    fetcher: Fetcher
    processed: BlobStore
    catalog: Catalog
    ledger: Ledger
    reuse: ReusePorts
    allowance: Allowance  # the work of heavy images is charged to their tenant's quota before they are decoded
    clock: Clock  # when images are counted: their request's progress, by which the reconciler tells a stalled one
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    max_receive_count: int = 5  # the queue's redrive threshold: its last delivery gives up instead of retrying
