"""Outbound HTTP to URLs chosen by strangers: image downloads (GET) and webhook deliveries (POST).

The point of this module is to stop server-side request forgery. Every connection it opens goes to an address
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

import contextlib
import contextvars
import http.client
import ipaddress
import os
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.exceptions as rexc
import urllib3.exceptions as uexc
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

from ips.polite import retry_after_seconds

if TYPE_CHECKING:
    from ips.ports import SourceValidators

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]  # host, port -> IP address strings

URL_INVALID = "URL_INVALID"
SCHEME_REFUSED = "SCHEME_REFUSED"
ADDRESS_REFUSED = "ADDRESS_REFUSED"
DNS_FAILED = "DNS_FAILED"
TOO_MANY_REDIRECTS = "TOO_MANY_REDIRECTS"
HTTP_STATUS = "HTTP_STATUS"
TOO_LARGE = "TOO_LARGE"
TIMEOUT = "TIMEOUT"
CONNECTION_FAILED = "CONNECTION_FAILED"

_SCHEMES = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_4XX = frozenset({408, 425, 429})
_MAX_URL_LENGTH = 8192
_CHUNK = 64 * 1024
_DRAIN_LIMIT = 64 * 1024  # a POST answer smaller than this is read so the connection can be kept alive
# Named, with a contact URL: some hosts refuse anonymous agents, and an operator who sees our traffic can reach us.
DEFAULT_USER_AGENT = "ImageProcessingSystem/1.0"
DEFAULT_CONTACT_URL = "https://ips.invalid/fetching"
_THROTTLING = frozenset({429, 503})  # statuses whose Retry-After says when to come back


# ---------------------------------------------------------------------------------------------- public types


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
            self, "allowlist", frozenset((_normalize_host(host), int(port)) for host, port in self.allowlist)
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


# ------------------------------------------------------------------------------------------ address checks

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


def _normalize_host(host: str) -> str:
    """The host as compared against the allowlist: lowercased, no IPv6 brackets, no trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def _parse_origin(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, sep, port = item[1:].partition("]:")
    else:
        host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"OUTBOUND_ALLOWLIST entry {item!r} must look like host:port")
    return _normalize_host(host), int(port)


class _Guard:
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
        if (_normalize_host(host), port) in self.policy.allowlist:
            return addresses
        for address in addresses:
            if not is_public_address(address):
                message = f"{_hostport(host, port)} resolves to non-public address {address}"
                raise FetchError(ADDRESS_REFUSED, message, permanent=True)
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


# ------------------------------------------------------------------------------------------ URL validation


@dataclass(frozen=True)
class _Target:
    url: str  # as requests will send it (IDNA-encoded, re-quoted)
    scheme: str
    host: str  # as urllib3 will connect to it, without IPv6 brackets
    port: int

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{_hostport(self.host, self.port)}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _invalid(message: str) -> FetchError:
    return FetchError(URL_INVALID, message, permanent=True)


def _validate_url(url: str) -> _Target:
    """Syntax checks that need no network. Parses the URL the way requests and urllib3 will, and refuses it if
    Python's own parser finds a different host (parser-differential tricks)."""
    if not isinstance(url, str) or not url:
        raise _invalid("URL must be a non-empty string")
    if len(url) > _MAX_URL_LENGTH:
        raise _invalid(f"URL longer than {_MAX_URL_LENGTH} characters")
    for char in url:
        if char.isspace() or char == "\\" or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise _invalid(f"URL contains a forbidden character {char!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _invalid(f"URL cannot be parsed: {exc}") from exc
    scheme = parts.scheme.lower()
    if not scheme:
        raise _invalid("URL has no scheme")
    if scheme not in _SCHEMES:
        message = f"scheme {scheme!r} is refused (http and https only)"
        raise FetchError(SCHEME_REFUSED, message, permanent=True)
    if "@" in parts.netloc:
        raise _invalid("URL must not contain credentials (user@host)")
    try:
        given_port = parts.port
    except ValueError as exc:
        raise _invalid(f"URL port is invalid: {exc}") from exc
    if given_port == 0:
        raise _invalid("port 0 is refused")  # requests would silently drop it and use the default port
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        final = str(prepared.url)
        parsed = parse_url(final)
        python_host = urlsplit(final).hostname
    except (rexc.RequestException, uexc.HTTPError, ValueError, UnicodeError) as exc:
        raise _invalid(f"URL cannot be parsed: {exc}") from exc
    if parsed.auth:
        raise _invalid("URL must not contain credentials (user@host)")
    if (parsed.scheme or "").lower() != scheme:
        raise _invalid("URL scheme is ambiguous")
    host = (parsed.host or "").strip("[]").lower()
    if not host:
        raise _invalid("URL has no host")
    if "%" in host:
        raise _invalid("IPv6 zone identifiers are refused")
    if not _same_host(host, python_host or ""):
        raise _invalid("URL host is ambiguous")
    port = parsed.port if parsed.port is not None else _SCHEMES[scheme]
    if not 0 < port < 65536 or (given_port is not None and given_port != port):
        raise _invalid(f"port {port} is out of range or ambiguous")
    return _Target(final, scheme, host, port)


def _same_host(a: str, b: str) -> bool:
    a, b = a.strip("[]").lower(), b.strip("[]").lower()
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def check_url(url: str, policy: OutboundPolicy, *, resolver: Resolver | None = None) -> None:
    """Validate a URL (scheme, host, every resolved address) without connecting; raises FetchError. Used to
    refuse webhook URLs at upload time. Passing says nothing about later: DNS may change, which is why the
    connection layer checks again, at the moment it connects."""
    target = _validate_url(url)
    _Guard(policy, resolver).checked_addresses(target.host, target.port)


# ------------------------------------------------------------------------------------------- the deadline


class _Deadline:
    """A whole-request time limit. Socket timeouts bound each read, not their sum, so a server can trickle a
    byte every few seconds forever; when this deadline passes a timer thread shuts down the sockets in use,
    which makes any blocked read (plain or TLS, headers or body) return at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        # dup()s of the sockets in use: shutting down a dup shuts down the connection, even under TLS
        self._watched: set[socket.socket] = set()
        self._fired = False
        self._finished = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self._fired or self.remaining() <= 0

    def watch(self, sock: socket.socket) -> socket.socket | None:
        """Register a connected socket; returns the handle to pass to unwatch()."""
        with self._lock:
            if self._finished:
                return None
            handle = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
            self._watched.add(handle)
            if self._fired:
                _shutdown(handle)
            return handle

    def unwatch(self, handle: socket.socket) -> None:
        with self._lock:
            if handle in self._watched:
                self._watched.discard(handle)
                handle.close()

    def finish(self) -> bool:
        """Stop the watchdog; returns True if it had already fired (the response may then be truncated)."""
        self._timer.cancel()
        with self._lock:
            self._finished = True
            for handle in self._watched:
                handle.close()
            self._watched.clear()
            return self._fired

    def _fire(self) -> None:
        # Under the lock, so a connection unwatched (returned to the pool) before this point is never touched.
        with self._lock:
            if self._finished:
                return
            self._fired = True
            for handle in self._watched:
                _shutdown(handle)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_ACTIVE_DEADLINE: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "ips_outbound_deadline", default=None
)


# ------------------------------------------------------------------ connections that dial checked addresses


def _open_checked_socket(conn: HTTPConnection, guard: _Guard) -> socket.socket:
    """Resolve conn's host once, check every address, dial only those addresses, verify the peer."""
    host: str = getattr(conn, "_dns_host", conn.host)  # urllib3 keeps a trailing dot here for the lookup
    port = conn.port or 0
    addresses = guard.checked_addresses(host, port)
    deadline = _ACTIVE_DEADLINE.get()
    timeout = conn.timeout if isinstance(conn.timeout, int | float) else None
    if deadline is not None:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise uexc.ConnectTimeoutError(conn, f"Connection to {conn.host} timed out (total deadline)")
        timeout = remaining if timeout is None else min(timeout, remaining)
    failures: list[str] = []
    timed_out = False
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sys.audit("http.client.connect", conn, conn.host, port)
            sock.connect((str(address), port))
            peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
        except TimeoutError as exc:
            sock.close()
            timed_out = True
            failures.append(f"{address}: {exc or 'timed out'}")
            continue
        except OSError as exc:
            sock.close()
            failures.append(f"{address}: {exc}")
            continue
        if peer != ipaddress.ip_address(str(address).split("%")[0]):
            sock.close()
            raise FetchError(ADDRESS_REFUSED, f"connected to {peer}, expected {address}", permanent=True)
        return sock
    message = f"Failed to connect to {conn.host}:{port} ({'; '.join(failures)})"
    if timed_out:
        raise uexc.ConnectTimeoutError(conn, message)
    raise uexc.NewConnectionError(conn, message)


class _WatchMixin:
    """Keeps the deadline watchdog informed about which socket this connection is using."""

    sock: socket.socket | None
    _watch_handle: socket.socket | None = None
    _watched_by: _Deadline | None = None

    def _unwatch(self) -> None:
        if self._watch_handle is not None and self._watched_by is not None:
            self._watched_by.unwatch(self._watch_handle)
        self._watch_handle = self._watched_by = None

    def _watch(self, sock: socket.socket) -> None:
        deadline = _ACTIVE_DEADLINE.get()
        if deadline is not None and self._watched_by is not deadline:
            self._unwatch()
            self._watch_handle = deadline.watch(sock)
            self._watched_by = deadline

    def _open(self, guard: _Guard) -> socket.socket:
        """The body of _new_conn: a fresh socket to a checked address, watched by the current deadline."""
        self._unwatch()
        sock = _open_checked_socket(self, guard)  # type: ignore[arg-type]
        try:
            self._watch(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def _rewatch(self) -> None:
        """A pooled connection reused by a new request: put its socket under the current deadline."""
        if self.sock is not None:
            self._watch(self.sock)


class _GuardedConnectionMixin(_WatchMixin):
    """Opens the TCP connection to a checked address (see _open) and keeps it under the fetch's deadline."""

    def __init__(self, *args: Any, guard: _Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard

    def _new_conn(self) -> socket.socket:
        return self._open(self._guard)

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._rewatch()
        super().request(*args, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        # Not unwatched here: http.client closes the connection as soon as it reads the headers of a response
        # that ends with the connection (HTTP/1.0, `Connection: close`), while the body is still read from the
        # same socket. The deadline's finish() releases the watch handle when the fetch is over.
        self._watch_handle = self._watched_by = None
        super().close()  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    """Only the TCP step is replaced: HTTPSConnection.connect() still wraps the socket with SNI and
    certificate verification for ``self.host`` -- the URL's hostname, not the IP address we dialled."""


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _WatchMixin):
            conn._unwatch()  # idle in the pool: no longer this request's business
        super()._put_conn(conn)


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _WatchMixin):
            conn._unwatch()
        super()._put_conn(conn)


class _GuardedPoolManager(PoolManager):
    """Hands the guard to every pool, which passes it (a connection keyword) to every connection it creates.

    Keep-alive reuse is safe: a pool is keyed by (scheme, host lowercased, port, TLS settings), and each of
    its connections was opened by _open_checked_socket for exactly that host and port under this client's
    fixed policy and resolver. Another host or port -- e.g. after a redirect -- gets another pool and fresh,
    checked connections. A reused connection may outlive the DNS answer it came from, but it still goes to
    an address that was public when checked, and an address's class does not change."""

    def __init__(self, *args: Any, guard: _Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["guard"] = self._guard  # after the pool key was computed, so it does not enter the key
        return super()._new_pool(scheme, host, port, context)


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: _Guard) -> None:
        self._guard = guard  # before super().__init__, which calls init_poolmanager
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = _GuardedPoolManager(
            num_pools=connections, maxsize=maxsize, block=block, guard=self._guard, **pool_kwargs
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # A proxy would connect on our behalf, out of reach of the address checks.
        raise RuntimeError("proxies are not supported by the outbound client")


class _Session(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> str | None:
        # We follow redirects ourselves. Without this, requests reads the whole body of a 3xx answer
        # (unbounded) even with allow_redirects=False, to prepare Response.next.
        return None


# ---------------------------------------------------------------------------------------------- the client

_DEFAULT_POLICY = OutboundPolicy()


class OutboundClient:
    """Thread-safe; keep one per process so connections are pooled."""

    def __init__(self, policy: OutboundPolicy = _DEFAULT_POLICY, *, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self._guard = _Guard(policy, resolver)
        session = _Session()
        session.trust_env = False  # no proxies, netrc or CA bundles from the environment
        session.proxies = {}
        session.max_redirects = 0
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # strangers' cookies: none kept
        session.headers.clear()
        session.headers.update({"User-Agent": policy.user_agent, "Accept": "*/*", "Accept-Encoding": "identity"})
        session.adapters.clear()
        adapter = _GuardedAdapter(self._guard)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def __enter__(self) -> OutboundClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def fetch(self, url: str, validators: SourceValidators | None = None, timeout: float | None = None) -> Fetched:
        """GET, following up to max_redirects redirects (each hop re-validated), within max_bytes and
        total_timeout (or `timeout`, when shorter: what the caller's invocation has left). Only a 2xx final
        answer is returned, or a 304 when `validators` made it conditional; anything else raises FetchError
        (429 / 503 with the Retry-After delay)."""
        limit = self.policy.total_timeout if timeout is None else max(0.001, min(timeout, self.policy.total_timeout))
        deadline = _Deadline(limit)
        token = _ACTIVE_DEADLINE.set(deadline)
        try:
            return self._fetch(url, deadline, _conditional_headers(validators))
        finally:
            deadline.finish()
            _ACTIVE_DEADLINE.reset(token)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST once; no redirect is followed (a 3xx is returned as the status). Raises FetchError when
        refused, timed out or unable to connect."""
        deadline = _Deadline(self.policy.total_timeout)
        token = _ACTIVE_DEADLINE.set(deadline)
        try:
            target = _validate_url(url)
            response = self._send("POST", target, deadline, data=body, headers=dict(headers))
            try:
                status = response.status_code
                _drain_quietly(response)
                return status
            finally:
                response.close()
        finally:
            deadline.finish()
            _ACTIVE_DEADLINE.reset(token)

    def _fetch(self, url: str, deadline: _Deadline, headers: dict[str, str]) -> Fetched:
        current, redirects = url, 0
        while True:
            target = _validate_url(current)
            response = self._send("GET", target, deadline, headers=headers)
            try:
                status = response.status_code
                location = response.headers.get("location")
                if status in _REDIRECTS and location is not None:
                    if redirects >= self.policy.max_redirects:
                        message = f"more than {self.policy.max_redirects} redirects"
                        raise FetchError(TOO_MANY_REDIRECTS, message, permanent=True)
                    redirects += 1
                    current = urljoin(target.url, _decode_header(location))
                    continue
                etag, modified = response.headers.get("etag"), response.headers.get("last-modified")
                if status == 304 and headers:
                    return Fetched(b"", response.headers.get("content-type"), target.url, status, etag, modified)
                if not 200 <= status < 300:
                    permanent = status < 500 and status not in _RETRYABLE_4XX
                    delay = retry_after_seconds(response.headers.get("retry-after")) if status in _THROTTLING else None
                    message = f"HTTP {status} from {target.origin}"
                    raise FetchError(HTTP_STATUS, message, permanent=permanent, retry_after=delay)
                body = self._read_body(response, target, deadline)
                if deadline.finish():  # the watchdog fired: what we read may be cut short
                    raise _timeout(target, self.policy, limit=deadline.seconds)
                return Fetched(body, response.headers.get("content-type"), target.url, status, etag, modified)
            finally:
                # A no-op once the body is fully read (the connection is already back in the pool);
                # otherwise the connection is closed rather than reused.
                response.close()

    def _send(self, method: str, target: _Target, deadline: _Deadline, **kwargs: Any) -> requests.Response:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise _timeout(target, self.policy, limit=deadline.seconds)
        timeout = (min(self.policy.connect_timeout, remaining), min(self.policy.read_timeout, remaining))
        try:
            return self._session.request(
                method, target.url, allow_redirects=False, stream=True, timeout=timeout, **kwargs
            )
        except (FetchError, rexc.InvalidHeader):
            raise  # InvalidHeader: a caller's bad header value, a bug rather than a network condition
        except Exception as exc:
            error = _translate(exc, target, deadline, self.policy)
            if error is None:
                raise
            raise error from exc

    def _read_body(self, response: requests.Response, target: _Target, deadline: _Deadline) -> bytes:
        limit = self.policy.max_bytes
        declared = _content_length(response.headers.get("content-length"))
        if declared is not None and declared > limit:
            raise FetchError(TOO_LARGE, f"Content-Length {declared} exceeds {limit} bytes", permanent=True)
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.raw.stream(_CHUNK, decode_content=True):
                total += len(chunk)
                if total > limit:
                    raise FetchError(TOO_LARGE, f"body exceeds {limit} bytes", permanent=True)
                chunks.append(chunk)
        except FetchError:
            raise
        except Exception as exc:
            error = _translate(exc, target, deadline, self.policy)
            if error is None:
                raise
            raise error from exc
        return b"".join(chunks)


def _conditional_headers(validators: SourceValidators | None) -> dict[str, str]:
    headers = {}
    if validators is not None and validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators is not None and validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


def _drain_quietly(response: requests.Response) -> None:
    """Read a small answer so its connection goes back to the pool; give up quietly on anything else."""
    declared = _content_length(response.headers.get("content-length"))
    if declared is None or declared > _DRAIN_LIMIT:
        return
    with contextlib.suppress(Exception):  # the status is what the caller wants; the body is best effort
        response.raw.read(_DRAIN_LIMIT, decode_content=False)


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1 or not (only := values.pop()).isdigit():
        return None  # urllib3 rejects conflicting lengths itself; the streamed count still applies
    return int(only)


def _decode_header(value: str) -> str:
    """http.client decodes headers as latin-1; a UTF-8 Location is far more likely (same as requests)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _timeout(target: _Target, policy: OutboundPolicy, *, whole: bool = True, limit: float | None = None) -> FetchError:
    if whole:
        seconds = policy.total_timeout if limit is None else limit
        message = f"{target.origin} did not finish within the {seconds:g} s total timeout"
    else:
        message = f"{target.origin} did not connect or answer in time ({_timeouts(policy)})"
    return FetchError(TIMEOUT, message, permanent=False)


def _timeouts(policy: OutboundPolicy) -> str:
    return f"connect {policy.connect_timeout:g} s, read {policy.read_timeout:g} s"


def _translate(exc: Exception, target: _Target, deadline: _Deadline, policy: OutboundPolicy) -> FetchError | None:
    """The FetchError for a network-level failure, or None for anything else (a bug: let it propagate)."""
    if deadline.expired:
        return _timeout(target, policy, limit=deadline.seconds)
    if isinstance(exc, rexc.InvalidURL | rexc.MissingSchema | rexc.InvalidSchema | rexc.URLRequired):
        return _invalid(f"URL refused by the HTTP client: {exc}")
    if isinstance(exc, rexc.ConnectionError) and not isinstance(exc, rexc.Timeout):
        return FetchError(CONNECTION_FAILED, f"{target.origin}: {_reason(exc)}", permanent=False)
    if isinstance(exc, rexc.Timeout | TimeoutError) or (
        isinstance(exc, uexc.TimeoutError) and not isinstance(exc, uexc.NewConnectionError)
    ):
        return _timeout(target, policy, whole=False)
    if isinstance(exc, rexc.RequestException | uexc.HTTPError | http.client.HTTPException | OSError):
        return FetchError(CONNECTION_FAILED, f"{target.origin}: {_reason(exc)}", permanent=False)
    return None


def _reason(exc: Exception) -> str:
    """The innermost useful message (requests wraps urllib3 wraps the socket error)."""
    inner: BaseException = exc
    while True:
        nested = getattr(inner, "reason", None)
        if not isinstance(nested, BaseException):
            nested = inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) else None
        if nested is None:
            return f"{type(inner).__name__}: {inner}"
        inner = nested
