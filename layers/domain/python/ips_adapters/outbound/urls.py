"""URL checks that need no network: parse a URL the way requests and urllib3 will, refuse what is ambiguous."""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import requests.exceptions as rexc
import urllib3.exceptions as uexc
from urllib3.util import parse_url

from ips.shared.fetching import SCHEME_REFUSED, URL_INVALID, FetchError
from ips_adapters.outbound.addresses import hostport

_SCHEMES = {"http": 80, "https": 443}
_MAX_URL_LENGTH = 8192


@dataclass(frozen=True)
class Target:
    url: str  # as requests will send it (IDNA-encoded, re-quoted)
    scheme: str
    host: str  # as urllib3 will connect to it, without IPv6 brackets
    port: int

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{hostport(self.host, self.port)}"


def invalid_url(message: str) -> FetchError:
    return FetchError(URL_INVALID, message, permanent=True)


def validate_url(url: str) -> Target:
    """Syntax checks that need no network. Parses the URL the way requests and urllib3 will, and refuses it if
    Python's own parser finds a different host (parser-differential tricks)."""
    if not isinstance(url, str) or not url:
        raise invalid_url("URL must be a non-empty string")
    if len(url) > _MAX_URL_LENGTH:
        raise invalid_url(f"URL longer than {_MAX_URL_LENGTH} characters")
    for char in url:
        if char.isspace() or char == "\\" or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise invalid_url(f"URL contains a forbidden character {char!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise invalid_url(f"URL cannot be parsed: {exc}") from exc
    scheme = parts.scheme.lower()
    if not scheme:
        raise invalid_url("URL has no scheme")
    if scheme not in _SCHEMES:
        message = f"scheme {scheme!r} is refused (http and https only)"
        raise FetchError(SCHEME_REFUSED, message, permanent=True)
    if "@" in parts.netloc:
        raise invalid_url("URL must not contain credentials (user@host)")
    try:
        given_port = parts.port
    except ValueError as exc:
        raise invalid_url(f"URL port is invalid: {exc}") from exc
    if given_port == 0:
        raise invalid_url("port 0 is refused")  # requests would silently drop it and use the default port
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        final = str(prepared.url)
        parsed = parse_url(final)
        python_host = urlsplit(final).hostname
    except (rexc.RequestException, uexc.HTTPError, ValueError, UnicodeError) as exc:
        raise invalid_url(f"URL cannot be parsed: {exc}") from exc
    if parsed.auth:
        raise invalid_url("URL must not contain credentials (user@host)")
    if (parsed.scheme or "").lower() != scheme:
        raise invalid_url("URL scheme is ambiguous")
    host = (parsed.host or "").strip("[]").lower()
    if not host:
        raise invalid_url("URL has no host")
    if "%" in host:
        raise invalid_url("IPv6 zone identifiers are refused")
    if not _same_host(host, python_host or ""):
        raise invalid_url("URL host is ambiguous")
    port = parsed.port if parsed.port is not None else _SCHEMES[scheme]
    if not 0 < port < 65536 or (given_port is not None and given_port != port):
        raise invalid_url(f"port {port} is out of range or ambiguous")
    return Target(final, scheme, host, port)


def _same_host(a: str, b: str) -> bool:
    a, b = a.strip("[]").lower(), b.strip("[]").lower()
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False
