"""The urllib3 and requests internals that ips_adapters.outbound.transport overrides or reads, with the shape it
relies on. urllib3 is pinned in layers/requirements.txt; when an upgrade changes any of these, this file fails
first and names what moved, before the SSRF guard silently stops being called."""

from __future__ import annotations

import inspect
import re
import socket
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ips_adapters.outbound import OutboundPolicy
from ips_adapters.outbound.addresses import Guard
from ips_adapters.outbound.transport import GuardedAdapter, GuardedSession

REQUIREMENTS = Path(__file__).resolve().parents[2] / "layers" / "requirements.txt"


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_urllib3_is_pinned_and_the_pin_is_what_runs() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)$", REQUIREMENTS.read_text(), re.MULTILINE))
    assert pins.get("urllib3") == urllib3.__version__, "re-check this file's expectations, then move the pin"


def test_connect_opens_the_socket_through_new_conn() -> None:
    # The guard lives in _new_conn: if connect() stopped calling it, nothing would check the address.
    assert parameters(HTTPConnection._new_conn) == ["self"]
    for cls in (HTTPConnection, HTTPSConnection):
        assert "self._new_conn()" in inspect.getsource(cls.connect), cls.__name__


def test_every_header_of_a_request_goes_through_putheader() -> None:
    # Trace headers are dropped in putheader: a request path that wrote headers another way would leak them.
    assert parameters(HTTPConnection.putheader) == ["self", "header", "values"]
    source = inspect.getsource(HTTPConnection.request)
    assert "self.putheader(header, value)" in source
    assert "self.endheaders()" in source


def test_a_connection_has_the_attributes_the_guarded_dialler_reads() -> None:
    connection = HTTPConnection("public.test.", 8080, timeout=3.0, source_address=None)
    assert connection._dns_host == "public.test."  # the name as looked up (trailing dot kept)
    assert connection.host == "public.test"
    assert connection.port == 8080
    assert connection.timeout == 3.0
    assert connection.source_address is None
    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in connection.socket_options
    assert connection.sock is None
    assert {"timeout", "source_address", "socket_options"} <= set(parameters(HTTPConnection.__init__))


def test_pools_take_a_connection_class_and_return_connections_through_put_conn() -> None:
    assert parameters(HTTPConnectionPool._put_conn) == ["self", "conn"]
    assert HTTPConnectionPool.ConnectionCls is HTTPConnection
    assert HTTPSConnectionPool.ConnectionCls is HTTPSConnection
    # Extra pool keywords reach every connection it creates (this is how the guard gets there).
    assert "**conn_kw" in str(inspect.signature(HTTPConnectionPool.__init__))
    assert "self.ConnectionCls(" in inspect.getsource(HTTPConnectionPool._new_conn)
    assert "**self.conn_kw" in inspect.getsource(HTTPConnectionPool._new_conn)


def test_pool_manager_builds_pools_in_new_pool_from_its_classes_by_scheme() -> None:
    assert parameters(PoolManager._new_pool) == ["self", "scheme", "host", "port", "request_context"]
    source = inspect.getsource(PoolManager._new_pool)
    assert "self.pool_classes_by_scheme[scheme]" in source
    assert "pool_cls(host, port, **request_context)" in source
    assert set(PoolManager(num_pools=1).pool_classes_by_scheme) == {"http", "https"}


def test_requests_adapter_and_session_hooks() -> None:
    assert parameters(HTTPAdapter.init_poolmanager) == ["self", "connections", "maxsize", "block", "pool_kwargs"]
    # __setstate__ (pickling) rebuilds the pool manager from what init_poolmanager must store.
    assert "self._pool_connections, self._pool_maxsize, block=self._pool_block" in inspect.getsource(
        HTTPAdapter.__setstate__
    )
    assert parameters(HTTPAdapter.proxy_manager_for) == ["self", "proxy", "proxy_kwargs"]
    assert parameters(requests.Session.get_redirect_target) == ["self", "resp"]
    assert "self.get_redirect_target(" in inspect.getsource(requests.Session.resolve_redirects)
    assert parameters(urllib3.HTTPResponse.stream) == ["self", "amt", "decode_content"]


def test_the_guarded_classes_are_the_ones_a_request_would_use() -> None:
    adapter = GuardedAdapter(Guard(OutboundPolicy(), None))
    for scheme, connection_cls in (("http", "_GuardedHTTPConnection"), ("https", "_GuardedHTTPSConnection")):
        pool = adapter.poolmanager.connection_from_url(f"{scheme}://public.test/")
        assert type(pool.ConnectionCls).__name__ == "type" and pool.ConnectionCls.__name__ == connection_cls
        assert pool.conn_kw["guard"] is adapter._guard
        connection = pool._new_conn()
        assert connection._guard is adapter._guard  # type: ignore[attr-defined]
    assert GuardedSession().get_redirect_target(requests.Response()) is None
