"""Outbound HTTP to URLs chosen by strangers: image downloads (GET) and webhook deliveries (POST).

The modules: ``addresses`` (which addresses may be dialled; resolve once, check all), ``urls`` (syntax checks),
``policy`` (limits and allowlist, from the environment), ``deadline`` (the whole-request watchdog),
``transport`` (the urllib3/requests classes that dial checked addresses) and ``client`` (OutboundClient).

The point of this package is to stop server-side request forgery. Every connection it opens goes to an address
that was checked, and the check looks at what the operating system would actually connect to:

* URLs are validated before anything is sent: http/https only, a host, no userinfo, no whitespace/control
  characters or backslashes, and the host we validated must be the host urllib3 will connect to.
* The TCP connection is opened by our own urllib3 connection classes (``_new_conn`` overridden). They resolve
  the host once (through the injectable resolver), refuse the whole answer if any address is not global,
  then connect to those checked IP addresses themselves -- the name is never handed to the OS again, so a
  DNS answer cannot change between check and connect (no rebinding gap). The socket's peer address is
  verified after connecting. TLS still uses the URL's hostname for SNI and certificate verification, because
  only the TCP step is replaced. Odd spellings (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``) are
  harmless: whatever getaddrinfo makes of them is what gets checked, and what gets checked is what we dial.
* An origin (hostname lowercased, effective port) in ``OutboundPolicy.allowlist`` skips the address check
  only; it is still resolved by the same resolver and dialled at the resolved address.
* Redirects are followed by hand, each hop re-validated and re-checked (a new host means a new connection
  pool, hence a new checked connection).
* Bytes are capped (Content-Length up front, then counted while streaming) and time is capped: connect and
  per-read timeouts, plus a watchdog that shuts down the sockets of a request when the whole-request
  deadline passes -- the only way to stop a server that trickles a byte at a time (headers or body).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ips_adapters.outbound.addresses import Resolver, is_public_address
from ips_adapters.outbound.policy import OutboundPolicy

if TYPE_CHECKING:
    from ips_adapters.outbound.client import OutboundClient, check_url


def __getattr__(name: str) -> Any:
    # The client (requests, urllib3's overrides) only when something calls out: every function's settings read
    # OutboundPolicy, and the status and secret functions never send a request.
    if name in ("OutboundClient", "check_url"):
        from ips_adapters.outbound import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["OutboundClient", "OutboundPolicy", "Resolver", "check_url", "is_public_address"]
