"""The use cases' settings and the domain's policy objects in them (RetryPolicy here; CsvLimits, ImageLimits and
ImageQuota beside what they limit): values only, ips_runtime.settings reads them from the environment. Each
function's composition root (ips_runtime.roots) hands its use cases what they need of them, beside their ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ips.shared.csv_input import CsvLimits
from ips.shared.imaging import ImageLimits
from ips.shared.quotas import WORK_UNIT_S, ImageQuota


@dataclass(frozen=True)
class RetryPolicy:
    """A request's webhook: at most `attempts` POSTs, the n-th failed one followed by a pause of `delay(n)`
    (5 s, 20 s, 80 s, ... up to 6 h: about 7.6 h from the first attempt to the eighth). A receiver's pause after
    its n-th failure in a row is the same `delay(n)`."""

    attempts: int = 8
    first_delay: float = 5.0
    factor: float = 4.0
    max_delay: float = 6 * 3600.0

    def delay(self, failed_attempts: int) -> float:
        """Pause after the n-th failed attempt: first_delay, then multiplied by factor, capped at max_delay."""
        return min(self.first_delay * self.factor ** (max(1, failed_attempts) - 1), self.max_delay)

    def delays(self) -> list[float]:
        """Every pause of a delivery that uses all its attempts."""
        return [self.delay(n) for n in range(1, self.attempts)]


# The presigned path: the client sends the file straight to S3, and it is validated as a stream.
PRESIGNED_CSV_LIMITS = CsvLimits(max_bytes=100 * 1024 * 1024, max_rows=200_000)


@dataclass(frozen=True)
class Settings:
    # Where processed objects are publicly readable (CloudFront in AWS, the gateway locally): the processing fakes'
    # (the process function's root gives ReusePorts its own, ips_runtime.settings.AssetBaseUrl).
    asset_base_url: str = ""
    webhook_secret: str | None = None  # the master whsec_... each tenant's signing secret is derived from
    webhook_rotation_window_s: int = 86_400  # how long a rotated-out tenant secret still signs beside the new one
    jpeg_quality: int = 50
    csv_limits: CsvLimits = field(default_factory=CsvLimits)  # the direct upload (the CSV is the request body)
    presigned_csv_limits: CsvLimits = PRESIGNED_CSV_LIMITS
    upload_expiry_s: int = 900  # how long a presigned upload may be used
    output_url_expiry_s: int = 900  # how long an output CSV's presigned GET works (a fresh one on every read)
    # Images per fan-out chunk (whole rows; a row with more is a chunk alone): one chunk's expansion fits an invocation.
    chunk_images: int = 1000
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    max_receive_count: int = 5  # the queue's redrive threshold: the last delivery gives up instead of retrying
    # A dead letter whose request is still before its deadline is put back on its queue this many times at most.
    dead_letter_redrives: int = 3
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)
    webhook_timeout_s: float = 10.0  # one webhook POST's whole limit: a receiver that never answers costs this
    # Longer than one attempt (the webhook function's timeout), shorter than the webhook queue's visibility
    # timeout: a sender that died mid-POST is replaced by the redelivery of its message.
    webhook_lease_seconds: int = 60
    # Every request ends by created (or uploaded) + base + per image x images; the reconciler enforces it.
    deadline_base_s: float = 3 * 3600
    deadline_per_image_s: float = 0.05
    stall_after_s: float = 900  # no image counted for this long: the reconciler re-queues the pending ones
    upload_grace_s: float = 300  # after a presigned upload expires: S3 may still be delivering its event
    # A reconciler round holds its lease at most this long (the function's timeout): a round that died frees it.
    reconcile_lease_s: float = 300
    webhook_resend_window_s: float = 86_400  # after its request ended, a webhook is attempted for this long at most
    # The reconciler's schedule: rounds further apart than twice this (found every store answering) had an outage
    # (or no round ran) between them, and the open requests' deadlines move by the time in between.
    reconcile_interval_s: float = 300
    # A status page's JSON as a Lambda result carries it: under Lambda's 6 MiB response payload.
    status_page_max_bytes: int = 5 * 1024 * 1024 + 100  # infra.topology.PayloadLimits.page_bytes
    output_retention_days: float = 14  # how long outputs are kept; reuse entries expire a day before them
    image_quota: ImageQuota = field(default_factory=ImageQuota)  # every API key's, unless it has its own
    tenant_image_quotas: dict[str, ImageQuota] = field(default_factory=dict)  # by tenant (API key id)
    quota_work_unit_s: float = WORK_UNIT_S  # estimated encode seconds one image of quota covers (ips.shared.quotas)

    def deadline(self, start: datetime, total_images: int) -> datetime:
        return start + timedelta(seconds=self.deadline_base_s + self.deadline_per_image_s * total_images)
