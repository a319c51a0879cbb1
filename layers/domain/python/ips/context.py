"""What every use case is handed: its settings and its backends. Built from the environment by ips.wiring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ips.csv_input import CsvLimits
from ips.imaging import ImageLimits
from ips.ports import BlobStore, Catalog, Fetcher, Ledger, TaskQueue
from ips.webhook import RetryPolicy, WebhookPoster


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Settings:
    asset_base_url: str  # where processed objects are publicly readable: CloudFront in AWS, the gateway locally
    webhook_secret: str | None = None  # whsec_...; required to send webhooks
    jpeg_quality: int = 50
    csv_limits: CsvLimits = field(default_factory=CsvLimits)
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    max_receive_count: int = 5  # the queue's redrive threshold: the last delivery gives up instead of retrying
    notify_lease_seconds: int = 900
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)

    def asset_url(self, key: str) -> str:
        return f"{self.asset_base_url.rstrip('/')}/{key}"


@dataclass(frozen=True)
class Backends:
    uploads: BlobStore
    processed: BlobStore
    queue: TaskQueue
    ledger: Ledger
    catalog: Catalog
    fetcher: Fetcher
    webhooks: WebhookPoster
    check_webhook_url: Callable[[str], None]  # raises ips.outbound.FetchError for a URL we must not call
    clock: Callable[[], datetime] = utc_now


@dataclass(frozen=True)
class Context:
    settings: Settings
    backends: Backends
