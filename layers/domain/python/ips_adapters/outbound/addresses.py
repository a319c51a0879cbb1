"""Address policy: which IP addresses a stranger's URL may reach, and resolving a host once to check them all."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ips.shared.fetching import ADDRESS_REFUSED, DNS_FAILED, FetchError

if TYPE_CHECKING:
    from ips_adapters.outbound.policy import OutboundPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]  # host, port -> IP address strings


_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, incl. the 169.254.169.254 metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. 255.255.255.255
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped (handled by extraction before this list is consulted)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32 and benchmarking 2001:2::/48
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for globally routable unicast addresses. IPv6 forms that embed an IPv4 address (mapped,
    NAT64, 6to4) are judged by the embedded address; Teredo and IPv4-compatible forms are refused outright.
    Explicit tables back up ``ipaddress.is_global``, whose answers vary across Python patch releases (3.12.1
    calls multicast, ``::7f00:1`` and ``fec0::1`` global)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is dialled as the IPv4 address a.b.c.d
            return is_public_address(ip.ipv4_mapped)
        if ip in _NAT64:  # 64:ff9b::a.b.c.d is translated to a.b.c.d by a NAT64 gateway
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48 is routed via 6to4 to AA.BB.CC.DD
            return is_public_address(ip.sixtofour)
        if ip.teredo is not None:  # 2001::/32: embedded server and client are checked, then blocked anyway
            server, client = ip.teredo
            if not (is_public_address(server) and is_public_address(client)):
                return False
        blocked: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = _BLOCKED_V6
    else:
        blocked = _BLOCKED_V4
    if any(ip in net for net in blocked):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def _system_resolver(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def normalize_host(host: str) -> str:
    """The host as compared against the allowlist: lowercased, no IPv6 brackets, no trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def not_public(host: str, port: int) -> str:
    """Why a host is refused, in words. Never which address it resolved to: the message reaches the tenant (an
    image's failure, the upload's 400, the webhook's lastError), and the addresses behind internal names are ours."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"{hostport(host, port)} resolves to an address that is not public (only public addresses are reached)"
    return f"{hostport(host, port)} is not a public address (only public addresses are reached)"


class Guard:
    """Resolve-and-check, shared by check_url() and the connection classes so both decide identically."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver | None) -> None:
        self.policy = policy
        self.resolver: Resolver = resolver or _system_resolver

    def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve once and return the addresses we may dial. Refuses the whole answer if any address is not
        public (unless the origin is allowlisted): with a mixed answer, a retry could pick the bad one."""
        host = host.strip("[]")
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]  # a canonical literal needs no lookup
        except ValueError:
            addresses = self._resolve(host, port)
        if (normalize_host(host), port) in self.policy.allowlist:
            return addresses
        if not all(is_public_address(address) for address in addresses):
            raise FetchError(ADDRESS_REFUSED, not_public(host, port), permanent=True)
        return addresses

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            answers = list(self.resolver(host, port))
        except FetchError:
            raise
        except (OSError, UnicodeError, ValueError) as exc:
            raise FetchError(DNS_FAILED, f"cannot resolve {host}: {exc}", permanent=False) from exc
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                address = ipaddress.ip_address(str(answer))
            except ValueError:
                message = f"resolver gave {answer!r} for {host}"
                raise FetchError(DNS_FAILED, message, permanent=False) from None
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise FetchError(DNS_FAILED, f"no address for {host}", permanent=False)
        return addresses
