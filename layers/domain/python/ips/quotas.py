"""Fairness between tenants: each API key may queue so many images a day and have so many in flight.

Images are reserved when a request is accepted, before anything is stored (the direct route) or when its file is
ingested (the presigned route: the count is known only then); the in-flight part is released once, when the
request ends (ips.completion.notify). The counters live beside the ledger (DynamoDB), moved atomically with a
reservation marker per request, so a retried reservation or release counts nothing twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings hold an ImageQuota
    from ips.context import Context

QUOTA_CODE = "IMAGE_QUOTA_EXCEEDED"


@dataclass(frozen=True)
class ImageQuota:
    per_day: int = 1_000_000  # images accepted per UTC day
    in_flight: int = 500_000  # images of requests that have not ended yet


class QuotaExceeded(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code, self.message = QUOTA_CODE, message


def quota_of(tenant: str, context: Context) -> ImageQuota:
    settings = context.settings
    return settings.tenant_image_quotas.get(tenant, settings.image_quota)


def _day(context: Context) -> str:
    return context.backends.clock().strftime("%Y-%m-%d")


def refusal(limit: str, images: int, quota: ImageQuota) -> QuotaExceeded:
    if limit == "perDay":
        return QuotaExceeded(f"{images} images would pass this API key's quota of {quota.per_day} images a day.")
    return QuotaExceeded(
        f"{images} images would pass this API key's cap of {quota.in_flight} images in flight; "
        "retry when earlier requests have finished."
    )


def check_allowance(tenant: str, context: Context) -> None:
    """Refuse a new presigned upload outright when the key has no room left at all (its images are counted,
    and reserved, when the file is ingested)."""
    quota = quota_of(tenant, context)
    used_today, in_flight = context.backends.quotas.usage(tenant, _day(context))
    if used_today >= quota.per_day:
        raise refusal("perDay", 1, quota)
    if in_flight >= quota.in_flight:
        raise refusal("inFlight", 1, quota)


def reserve_images(tenant: str, request_id: str, images: int, context: Context) -> None:
    """Count the request's images against the key's limits, or raise QuotaExceeded and count nothing."""
    quota = quota_of(tenant, context)
    limit = context.backends.quotas.reserve(tenant, request_id, images, quota.per_day, quota.in_flight, _day(context))
    if limit is not None:
        raise refusal(limit, images, quota)


def release_images(request_id: str, context: Context) -> None:
    """The request ended: its images are no longer in flight. Idempotent; nothing for a request never reserved."""
    context.backends.quotas.release(request_id)
