"""Whether a CSV's image URL can be a source: the shape only (addresses are checked when it is fetched)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# http(s), a host of letters, digits, dots and hyphens, an optional port under 10000, then no spaces or controls:
# a subset of what full_url_problem accepts.
_PLAIN_HTTP_URL = re.compile(r"(?i:https?)://[A-Za-z0-9.-]+(?::[0-9]{1,4})?(?:[/?#][^\x00-\x20\x7f]*)?\Z")


def url_problem(url: str, max_length: int = 2048) -> str | None:
    """Why a URL cannot be an image source, or None. Address checks happen when it is fetched."""
    if len(url) > max_length:
        return f"longer than {max_length} characters"
    if _PLAIN_HTTP_URL.match(url):
        return None  # the common case, decided without the full parser (validation is the upload's cost)
    return full_url_problem(url)


def full_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "only http and https URLs are accepted"
    if not parts.hostname:
        return "the URL has no host"
    if _SPACE_OR_CONTROL.search(url):
        return "the URL contains spaces or control characters"
    return None
