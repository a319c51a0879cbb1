"""urllib3 and requests, made to dial only checked addresses under the request's deadline.

They also drop trace headers (TRACE_HEADERS) in ``putheader``, whatever added them.

These classes override urllib3 where it has no public hook: ``HTTPConnection._new_conn`` (the TCP step),
``HTTPConnectionPool._put_conn`` and ``PoolManager._new_pool``, and read ``HTTPConnection._dns_host``.
urllib3 is pinned (layers/requirements.txt) and tests/unit/test_outbound_urllib3_internals.py fails loudly when
any of them changes shape."""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

import requests
import urllib3.exceptions as uexc
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ips.shared.fetching import ADDRESS_REFUSED, FetchError
from ips_adapters.outbound.addresses import Guard, hostport
from ips_adapters.outbound.deadline import ACTIVE_DEADLINE, Deadline

# Trace context is for our own services. Whatever instrumentation adds it (X-Ray's patches of requests or
# http.client, OpenTelemetry), it never goes to a stranger's server: image hosts and webhook receivers.
TRACE_HEADERS = frozenset({"x-amzn-trace-id", "traceparent", "tracestate"})


def _open_checked_socket(conn: HTTPConnection, guard: Guard) -> socket.socket:
    """Resolve conn's host once, check every address, dial only those addresses, verify the peer."""
    host: str = getattr(conn, "_dns_host", conn.host)  # urllib3 keeps a trailing dot here for the lookup
    port = conn.port or 0
    addresses = guard.checked_addresses(host, port)
    deadline = ACTIVE_DEADLINE.get()
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
            # Never the peer's address: the message reaches the tenant (see addresses.not_public).
            message = f"the connection to {hostport(host, port)} reached another address than the one checked"
            raise FetchError(ADDRESS_REFUSED, message, permanent=True)
        return sock
    message = f"Failed to connect to {conn.host}:{port} ({'; '.join(failures)})"
    if timed_out:
        raise uexc.ConnectTimeoutError(conn, message)
    raise uexc.NewConnectionError(conn, message)


class _WatchMixin:
    """Keeps the deadline watchdog informed about which socket this connection is using."""

    sock: socket.socket | None
    _watch_handle: socket.socket | None = None
    _watched_by: Deadline | None = None

    def _unwatch(self) -> None:
        if self._watch_handle is not None and self._watched_by is not None:
            self._watched_by.unwatch(self._watch_handle)
        self._watch_handle = self._watched_by = None

    def _watch(self, sock: socket.socket) -> None:
        deadline = ACTIVE_DEADLINE.get()
        if deadline is not None and self._watched_by is not deadline:
            self._unwatch()
            self._watch_handle = deadline.watch(sock)
            self._watched_by = deadline

    def _open(self, guard: Guard) -> socket.socket:
        """The body of _new_conn: a fresh socket to a checked address, watched by the current deadline."""
        self._unwatch()
        sock = _open_checked_socket(self, guard)  # type: ignore[arg-type]  # a mixin: self is an HTTPConnection in use
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

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard

    def _new_conn(self) -> socket.socket:
        return self._open(self._guard)

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._rewatch()
        super().request(*args, **kwargs)  # type: ignore[misc]  # a mixin: the HTTPConnection after it in the MRO has it

    def putheader(self, header: str | bytes, *values: Any) -> None:
        """Every header goes out through here (http.client and urllib3 alike): trace headers stop here."""
        name = header.decode("latin-1") if isinstance(header, bytes) else header
        if name.strip().lower() not in TRACE_HEADERS:
            super().putheader(header, *values)  # type: ignore[misc]  # a mixin: the HTTPConnection after it in the MRO has it

    def close(self) -> None:
        # Not unwatched here: http.client closes the connection as soon as it reads the headers of a response
        # that ends with the connection (HTTP/1.0, `Connection: close`), while the body is still read from the
        # same socket. The deadline's finish() releases the watch handle when the fetch is over.
        self._watch_handle = self._watched_by = None
        super().close()  # type: ignore[misc]  # a mixin: the HTTPConnection after it in the MRO has it


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

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:
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


class GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: Guard) -> None:
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


class GuardedSession(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> str | None:
        # We follow redirects ourselves. Without this, requests reads the whole body of a 3xx answer
        # (unbounded) even with allow_redirects=False, to prepare Response.next.
        return None
