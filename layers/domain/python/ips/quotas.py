"""Fairness between tenants: each API key may queue so many images a day and have so many in flight.

Images are reserved when a request is accepted, before anything is stored (the direct route) or when its file is
ingested (the presigned route: the count is known only then); the in-flight part is released once, when the
request ends (ips.completion.send_webhook). The counters live beside the ledger (DynamoDB), moved atomically with a
reservation marker per request, so a retried reservation or release counts nothing twice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ips.ports import Clock, Quotas

QUOTA_CODE = "IMAGE_QUOTA_EXCEEDED"


@dataclass(frozen=True)
class ImageQuota:
    per_day: int = 1_000_000  # images accepted per UTC day
    in_flight: int = 500_000  # images of requests that have not ended yet


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

    def release(self, request_id: str) -> None:
        """The request ended: its images are no longer in flight. Idempotent; nothing for a request never reserved."""
        self.quotas.release(request_id)
