"""What the domain knows of fetching a URL: the outcome (Fetched) and the failure (FetchError, with a stable code).

The HTTP client that produces them is an adapter (ips.adapters.outbound), built by the wiring."""

from __future__ import annotations

from dataclasses import dataclass

URL_INVALID = "URL_INVALID"
SCHEME_REFUSED = "SCHEME_REFUSED"
ADDRESS_REFUSED = "ADDRESS_REFUSED"
DNS_FAILED = "DNS_FAILED"
TOO_MANY_REDIRECTS = "TOO_MANY_REDIRECTS"
HTTP_STATUS = "HTTP_STATUS"
TOO_LARGE = "TOO_LARGE"
TIMEOUT = "TIMEOUT"
CONNECTION_FAILED = "CONNECTION_FAILED"


class FetchError(Exception):
    """A refused or failed outbound request. ``str(exc)`` is the message; ``code`` is one of the constants
    above; ``permanent`` says whether trying again later could help."""

    def __init__(self, code: str, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after  # seconds the server asked us to wait (429 / 503 Retry-After)

    def __repr__(self) -> str:
        return f"FetchError({self.code!r}, {self.message!r}, permanent={self.permanent})"


@dataclass(frozen=True)
class Fetched:
    body: bytes
    content_type: str | None
    final_url: str
    status: int  # 200..299, or 304 for a conditional GET whose resource did not change (then body is empty)
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304
