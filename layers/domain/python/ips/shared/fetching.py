"""What the domain knows of fetching a URL: the outcome (Fetched), the failure (FetchError, with a stable code) and
how long a server asked us to wait (Retry-After).

The HTTP client that produces them is an adapter (ips_adapters.outbound), built by the wiring."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

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


MAX_DELAY_S = 12 * 3600  # SQS's visibility timeout limit


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP-date), capped at MAX_DELAY_S; None when
    absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text), MAX_DELAY_S))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return float(min(max(seconds, 0.0), MAX_DELAY_S))
