"""The outbound client's limits and allowlist (OutboundPolicy), and how they are read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ips.adapters.outbound.addresses import normalize_host

# Named, with a contact URL: some hosts refuse anonymous agents, and an operator who sees our traffic can reach us.
DEFAULT_USER_AGENT = "ImageProcessingSystem/1.0"
DEFAULT_CONTACT_URL = "https://ips.invalid/fetching"


@dataclass(frozen=True)
class OutboundPolicy:
    allowlist: frozenset[tuple[str, int]] = frozenset()  # (host lowercased, port) let through even if private
    max_redirects: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # per socket read
    total_timeout: float = 30.0  # whole fetch or post, including trickling headers and bodies
    max_bytes: int = 25 * 1024 * 1024
    user_agent: str = f"{DEFAULT_USER_AGENT} (+{DEFAULT_CONTACT_URL})"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "allowlist", frozenset((normalize_host(host), int(port)) for host, port in self.allowlist)
        )
        if self.max_redirects < 0 or self.max_bytes < 0:
            raise ValueError("max_redirects and max_bytes must not be negative")
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("timeouts must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> OutboundPolicy:
        """OUTBOUND_ALLOWLIST="127.0.0.1:8080,localhost:9000,[::1]:8443" (host:port, comma separated).

        Optional, defaults as above: OUTBOUND_MAX_REDIRECTS, OUTBOUND_CONNECT_TIMEOUT, OUTBOUND_READ_TIMEOUT,
        OUTBOUND_TOTAL_TIMEOUT (seconds), OUTBOUND_MAX_BYTES; FETCH_USER_AGENT and FETCH_CONTACT_URL make the
        User-Agent "<agent> (+<contact>)". A malformed value raises ValueError."""
        items = (item.strip() for item in environ.get("OUTBOUND_ALLOWLIST", "").split(","))
        allowlist = frozenset(_parse_origin(item) for item in items if item)
        numbers: dict[str, Any] = {}
        for field, name, kind in (
            ("max_redirects", "OUTBOUND_MAX_REDIRECTS", int),
            ("connect_timeout", "OUTBOUND_CONNECT_TIMEOUT", float),
            ("read_timeout", "OUTBOUND_READ_TIMEOUT", float),
            ("total_timeout", "OUTBOUND_TOTAL_TIMEOUT", float),
            ("max_bytes", "OUTBOUND_MAX_BYTES", int),
        ):
            value = environ.get(name, "").strip()
            if value:
                try:
                    numbers[field] = kind(value)
                except ValueError:
                    raise ValueError(f"{name}={value!r} is not a valid {kind.__name__}") from None
        agent = environ.get("FETCH_USER_AGENT", "").strip() or DEFAULT_USER_AGENT
        contact = environ.get("FETCH_CONTACT_URL", "").strip() or DEFAULT_CONTACT_URL
        return cls(allowlist=allowlist, user_agent=f"{agent} (+{contact})", **numbers)


def _parse_origin(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, sep, port = item[1:].partition("]:")
    else:
        host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"OUTBOUND_ALLOWLIST entry {item!r} must look like host:port")
    return normalize_host(host), int(port)
