"""Links to a request's output CSV, read by the status route and the webhook."""

from __future__ import annotations

from dataclasses import dataclass

from ips.shared.ports import UploadStore


@dataclass(frozen=True)
class OutputLinks:
    """Links to output CSVs: a fresh presigned GET, valid for `expiry_s` (OUTPUT_URL_EXPIRY_SECONDS), on every
    status read and webhook."""

    uploads: UploadStore
    expiry_s: int = 900

    def url(self, key: str) -> str:
        return self.uploads.presigned_get(key, self.expiry_s)
