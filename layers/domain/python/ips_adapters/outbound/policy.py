"""The outbound client's limits and allowlist (OutboundPolicy); ips_runtime.settings reads them from the
environment."""

from __future__ import annotations

from dataclasses import dataclass

from ips_adapters.outbound.addresses import normalize_host

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


def parse_origin(item: str) -> tuple[str, int]:
    """An allowlist entry: `host:port`, `[v6]:port`."""
    if item.startswith("["):
        host, sep, port = item[1:].partition("]:")
    else:
        host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"OUTBOUND_ALLOWLIST entry {item!r} must look like host:port")
    return normalize_host(host), int(port)
