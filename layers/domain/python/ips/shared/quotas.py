"""Fairness between tenants: each API key may queue so many images a day and have so many in flight.

Images are reserved when a request is accepted, before anything is stored (the direct route) or when its file is
ingested (the presigned route: the count is known only then); the in-flight part is released once, when the
request ends (ips.completion.service.complete_request). The counters live beside the ledger (DynamoDB), moved atomically
with a reservation marker per request, so a retried reservation or release counts nothing twice.

The day's quota is of work, not only of images. At intake an image's pixels are unknown, so it reserves one
image. When it is processed, its encode's estimate (ips.shared.imaging.encode_cost: output megapixels x its format's
factor) is known from the header before anything is decoded: an image estimated at more than `work_unit_s` counts
ceil(estimate / work_unit_s) images, and the ones beyond the reserved one are charged to the day it is processed
then, within the key's daily quota, once per image (a marker beside the counter). An image whose work would pass
the quota fails IMAGE_QUOTA_EXCEEDED undecoded, and the charged work counts against every later reservation, so
a tenant over its work budget gets no more work in that day. Images in flight stay a count of images: that cap
bounds what waits in the queues, whatever it costs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ips.shared.model import ImageTask
from ips.shared.ports import Clock, Quotas

QUOTA_CODE = "IMAGE_QUOTA_EXCEEDED"
# Estimated encode CPU seconds one image of quota covers: by ips.shared.imaging.encode_cost's factors, every JPEG up to
# the 50 MP cap counts as one image, an opaque WebP up to 8 to 16 MP and an AVIF up to 1 to 7 MP (quality 95 to 1).
WORK_UNIT_S = 2.0


@dataclass(frozen=True)
class ImageQuota:
    per_day: int = 1_000_000  # images accepted per UTC day
    in_flight: int = 500_000  # images of requests that have not ended yet


def work_units(seconds: float, unit_s: float = WORK_UNIT_S) -> int:
    """How many images of quota an encode estimated at `seconds` counts as: one per `unit_s`, at least one."""
    return max(1, math.ceil(seconds / unit_s))


class QuotaExceeded(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code, self.message = QUOTA_CODE, message


def refusal(limit: str, images: int, quota: ImageQuota) -> QuotaExceeded:
    if limit == "perDay":
        return QuotaExceeded(f"{images} images would pass this API key's quota of {quota.per_day} images a day.")
    return QuotaExceeded(
        f"{images} images would pass this API key's cap of {quota.in_flight} images in flight; "
        "retry when earlier requests have finished."
    )


@dataclass(frozen=True)
class Allowance:
    """Each API key's image limits, and the counters they are checked against."""

    quotas: Quotas
    clock: Clock
    default: ImageQuota = field(default_factory=ImageQuota)  # every API key's, unless it has its own
    by_tenant: Mapping[str, ImageQuota] = field(default_factory=dict)  # by tenant (API key id)
    work_unit_s: float = WORK_UNIT_S  # estimated encode seconds one image of quota covers

    def quota_of(self, tenant: str) -> ImageQuota:
        return self.by_tenant.get(tenant, self.default)

    def _day(self) -> str:
        return self.clock().strftime("%Y-%m-%d")

    def check(self, tenant: str) -> None:
        """Refuse a new presigned upload outright when the key has no room left at all (its images are counted,
        and reserved, when the file is ingested)."""
        quota = self.quota_of(tenant)
        used_today, in_flight = self.quotas.usage(tenant, self._day())
        if used_today >= quota.per_day:
            raise refusal("perDay", 1, quota)
        if in_flight >= quota.in_flight:
            raise refusal("inFlight", 1, quota)

    def reserve(self, tenant: str, request_id: str, images: int) -> None:
        """Count the request's images against the key's limits, or raise QuotaExceeded and count nothing."""
        quota = self.quota_of(tenant)
        limit = self.quotas.reserve(tenant, request_id, images, quota.per_day, quota.in_flight, self._day())
        if limit is not None:
            raise refusal(limit, images, quota)

    def charge_work(self, task: ImageTask, seconds: float) -> None:
        """Charge the image's work beyond the one image reserved at intake to its key's quota for today, once; raise
        QuotaExceeded (and charge nothing) when that would pass the quota."""
        extra = work_units(seconds, self.work_unit_s) - 1
        if extra <= 0:
            return
        quota = self.quota_of(task.tenant)
        if not self.quotas.charge(task, extra, quota.per_day, self._day()):
            raise QuotaExceeded(
                f"this image's encode is estimated at {seconds:.0f} s of CPU, {extra + 1} images of work; it would "
                f"pass this API key's quota of {quota.per_day} images a day."
            )

    def release(self, request_id: str) -> None:
        """The request ended: its images are no longer in flight. Idempotent; nothing for a request never reserved."""
        self.quotas.release(request_id)
