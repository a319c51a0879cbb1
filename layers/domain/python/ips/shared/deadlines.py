"""When a request must have ended: intake sets each request's deadline by this policy, the reconciler ends
the requests past it (and moves it for a store outage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class DeadlinePolicy:
    """Every request ends by its start (created, or its file uploaded) + `base_s` + `per_image_s` x its images."""

    base_s: float = 3 * 3600
    per_image_s: float = 0.05

    def deadline(self, start: datetime, total_images: int) -> datetime:
        return start + timedelta(seconds=self.base_s + self.per_image_s * total_images)
