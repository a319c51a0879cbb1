"""ips_adapters.outbound: SSRF-safe fetch and webhook POST.

Every byte these tests send goes to ThreadingHTTPServer instances they start on 127.0.0.1. An autouse fixture
enforces that: socket.connect refuses (with AssertionError) anything but a loopback address and records what
was dialled, and getaddrinfo answers only numeric hosts and "localhost" (no DNS query ever leaves the box).
Names such as "public.test" are resolved by resolvers the tests inject.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ips.processing.ports import SourceValidators
from ips.shared.fetching import Fetched, FetchError
from ips_adapters.outbound import OutboundClient, OutboundPolicy, Resolver, addresses, check_url, is_public_address

# ------------------------------------------------------------------------------------------ local servers


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Route = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed

    @property
    def owner(self) -> LocalServer:
        return self.server.owner  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        self.owner.connections.append(self.client_address)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        self.owner.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body))
        route = self.owner.routes.get(path, reply(404, b"no route"))
        try:
            route(self)
        except OSError:  # the client hung up on us, which is often the point of the test
            self.close_connection = True

    do_GET = _dispatch
    do_POST = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-answer (resets) are expected here


class LocalServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Recorded] = []
        self.connections: list[tuple[str, int]] = []
        self.stop = threading.Event()
        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    @property
    def origin(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def url(self, path: str = "/", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Route:
    def route(h: Handler) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return route


def redirect(location: str, status: int = 302) -> Route:
    return reply(status, b"moved", {"Location": location})


def chunked(chunks: int, size: int = 64 * 1024) -> Route:
    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for _ in range(chunks):
            h.wfile.write(b"%x\r\n%s\r\n" % (size, b"x" * size))
        h.wfile.write(b"0\r\n\r\n")

    return route


def until_close(total: int) -> Route:
    """No Content-Length, no chunking: the body ends when the server closes the connection."""

    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        for _ in range(total // 4096):
            h.wfile.write(b"x" * 4096)
        h.close_connection = True

    return route


def trickle_body(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    for _ in range(1000):
        if h.owner.stop.wait(0.2):
            return
        h.wfile.write(b"x")


def trickle_headers(h: Handler) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"s" * 200 + b"\r\nContent-Length: 2\r\n\r\nok":
        if h.owner.stop.wait(0.2):
            return
        h.wfile.write(bytes([byte]))


def never_answer(h: Handler) -> None:
    h.owner.stop.wait(10)
    h.close_connection = True


def declared_too_large(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(50 * 1024 * 1024))
    h.end_headers()
    h.wfile.write(b"x" * 1024)
    h.owner.stop.wait(10)  # the rest never comes: the client must not wait for it
    h.close_connection = True


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def dialled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Loopback-only network for the whole test; returns the (address, port) of every connection attempt."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo
    attempts: list[tuple[str, int]] = []

    def connect(sock: socket.socket, address: tuple) -> None:  # type: ignore[type-arg]
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if not (mapped or ip).is_loopback:
            raise AssertionError(f"test tried to reach non-loopback address {address!r}")
        attempts.append((str(address[0]), int(address[1])))
        return real_connect(sock, address)

    def getaddrinfo(host: str | None, port: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        if host not in (None, "localhost"):
            try:
                real_getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)
            except socket.gaierror:
                raise socket.gaierror(socket.EAI_NONAME, f"test: no DNS for {host!r}") from None
        return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def make_server() -> Iterator[Callable[..., LocalServer]]:
    servers: list[LocalServer] = []

    def make(**kwargs: object) -> LocalServer:
        servers.append(LocalServer(**kwargs))  # type: ignore[arg-type]
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def server(make_server: Callable[..., LocalServer]) -> LocalServer:
    return make_server()


@pytest.fixture
def make_client() -> Iterator[Callable[..., OutboundClient]]:
    clients: list[OutboundClient] = []

    def make(*allowed: LocalServer, resolver: Resolver | None = None, **policy: object) -> OutboundClient:
        extra: set[tuple[str, int]] = policy.pop("allowlist", set())  # type: ignore[assignment]
        allowlist = frozenset({s.origin for s in allowed} | extra)
        clients.append(OutboundClient(OutboundPolicy(allowlist, **policy), resolver=resolver))  # type: ignore[arg-type]
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def fixed(answers: dict[str, list[str]]) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, host)
        return answers[host]

    return resolve


def refused(code: str, call: Callable[[], object]) -> FetchError:
    with pytest.raises(FetchError) as info:
        call()
    assert info.value.code == code, info.value
    return info.value


# ---------------------------------------------------------------------------------------------- happy path


def test_fetch_from_allowlisted_local_server(server, make_client, dialled):
    server.routes["/img.png"] = reply(200, b"\x89PNG...", {"Content-Type": "image/png"})
    fetched = make_client(server).fetch(server.url("/img.png?size=1"))
    assert fetched == Fetched(b"\x89PNG...", "image/png", server.url("/img.png?size=1"), 200)
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/img.png?size=1")]
    assert server.requests[0].headers["Accept-Encoding"] == "identity"
    assert dialled == [("127.0.0.1", server.port)]


def test_connections_are_kept_alive_and_reused(server, make_client, dialled):
    server.routes["/"] = reply(200, b"ok")
    client = make_client(server, total_timeout=0.3)
    assert client.fetch(server.url()).body == b"ok"
    time.sleep(0.4)  # past the first fetch's deadline: its watchdog must not have killed the pooled socket
    assert client.fetch(server.url()).body == b"ok"
    assert len(server.requests) == 2
    assert len(server.connections) == 1
    assert len(dialled) == 1


def not_modified(h: Handler) -> None:
    """A 304 as servers send it: no body, and no Content-Length."""
    h.send_response(304)
    h.send_header("ETag", '"v1"')
    h.end_headers()


def test_a_304_keeps_its_connection_for_the_next_fetch(server, make_client, dialled):
    server.routes["/"] = not_modified
    client = make_client(server)
    validators = SourceValidators('"v1"', None)
    assert [client.fetch(server.url(), validators).status for _ in range(3)] == [304, 304, 304]
    assert len(server.requests) == 3
    assert len(server.connections) == 1 and len(dialled) == 1


def test_deadlines_share_one_watchdog_thread(server, make_client):
    server.routes["/"] = reply(200, b"ok")
    client = make_client(server)
    for _ in range(20):
        assert client.fetch(server.url()).body == b"ok"
    # A thread per fetch would be started and stopped 20 times; one thread watches every deadline.
    assert [thread.name for thread in threading.enumerate()].count("outbound-deadlines") == 1


def test_cookies_from_strangers_are_not_kept(server, make_client):
    server.routes["/"] = reply(200, b"ok", {"Set-Cookie": "session=abc; Path=/"})
    client = make_client(server)
    client.fetch(server.url())
    client.fetch(server.url())
    assert "Cookie" not in server.requests[1].headers


def test_environment_proxy_is_ignored(server, make_client, dialled, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://10.9.9.9:3128")  # would trip the loopback guard if used
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.routes["/"] = reply(200, b"direct")
    assert make_client(server).fetch(server.url()).body == b"direct"
    assert dialled == [("127.0.0.1", server.port)]


# ------------------------------------------------------------------------------------- refused destinations


def test_loopback_refused_when_not_allowlisted(server, make_client, dialled):
    server.routes["/"] = reply(200, b"secret")
    error = refused("ADDRESS_REFUSED", lambda: make_client().fetch(server.url()))
    assert error.permanent
    assert server.connections == [] and dialled == []


ODD_LOOPBACK_HOSTS = [
    "2130706433",  # decimal
    "017700000001",  # octal, one number
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hex
    "0x7f000001",  # hex, one number
    "127.1",  # short form
    "127.000.000.001",
    "localhost",
    "LOCALHOST",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "0",  # 0.0.0.0 reaches the local host on Linux
    "0.0.0.0",
    "[::]",
]


@pytest.mark.parametrize("host", ODD_LOOPBACK_HOSTS)
def test_odd_spellings_of_local_addresses_refused(host, server, make_client, dialled):
    server.routes["/"] = reply(200, b"secret")
    client = make_client(server)  # 127.0.0.1:port is allowlisted; other spellings of it are not
    url = server.url(host=host)
    refused("ADDRESS_REFUSED", lambda: check_url(url, client.policy))
    refused("ADDRESS_REFUSED", lambda: client.fetch(url))
    refused("ADDRESS_REFUSED", lambda: client.post(url, b"{}", {}))
    assert server.connections == [] and dialled == []


def test_fullwidth_digits_never_reach_loopback(server, make_client, dialled):
    url = f"http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{server.port}/"  # IDNA could map this to 127.0.0.1
    with pytest.raises(FetchError) as info:
        make_client(server).fetch(url)
    assert info.value.code in {"URL_INVALID", "ADDRESS_REFUSED"}
    assert dialled == [] and server.connections == []


def test_check_url_accepts_a_public_name_without_connecting(dialled):
    resolver = fixed({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    check_url("https://hooks.example.com/ips?token=x", OutboundPolicy(), resolver=resolver)
    assert dialled == []


NON_PUBLIC_ANSWERS = [
    ["127.0.0.1"],
    ["10.1.2.3"],
    ["172.16.5.4"],
    ["172.31.255.255"],
    ["192.168.1.1"],
    ["169.254.169.254"],  # cloud metadata
    ["100.64.0.1"],  # carrier-grade NAT
    ["0.0.0.0"],
    ["224.0.0.1"],
    ["255.255.255.255"],
    ["240.0.0.1"],
    ["198.18.0.1"],
    ["192.0.2.1"],
    ["192.0.0.8"],
    ["::1"],
    ["::"],
    ["fd00::1"],
    ["fe80::1"],
    ["fec0::1"],
    ["ff02::1"],
    ["::ffff:10.0.0.1"],
    ["::ffff:169.254.169.254"],
    ["::127.0.0.1"],  # IPv4-compatible
    ["64:ff9b::a9fe:a9fe"],  # NAT64 of 169.254.169.254
    ["2002:c0a8:101::1"],  # 6to4 of 192.168.1.1
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2"],  # Teredo
    ["2001:db8::1"],
    ["93.184.216.34", "127.0.0.1"],  # one bad address spoils the answer
    ["127.0.0.1", "93.184.216.34"],
]


@pytest.mark.parametrize("answer", NON_PUBLIC_ANSWERS, ids=lambda a: "+".join(a))
def test_public_name_with_non_public_answer_refused_before_connecting(answer, make_client, dialled):
    resolver = fixed({"public.test": answer})
    client = make_client(resolver=resolver)
    refused("ADDRESS_REFUSED", lambda: check_url("https://public.test/x", client.policy, resolver=resolver))
    refused("ADDRESS_REFUSED", lambda: client.fetch("http://public.test/a.jpg"))
    refused("ADDRESS_REFUSED", lambda: client.fetch("https://public.test/a.jpg"))
    refused("ADDRESS_REFUSED", lambda: client.post("https://public.test/hook", b"{}", {}))
    assert dialled == []


def spellings(answer: list[str]) -> set[str]:
    """Every way a message could name the answer's addresses: as given, compressed, exploded, and the IPv4 inside."""
    names = set()
    for text in answer:
        address = ipaddress.ip_address(text)
        names |= {text, str(address), address.exploded}
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            names.add(str(address.ipv4_mapped))
    return names


@pytest.mark.parametrize("answer", NON_PUBLIC_ANSWERS, ids=lambda a: "+".join(a))
def test_a_refused_name_is_explained_without_the_address_it_resolved_to(answer, make_client, dialled):
    # The message reaches the tenant (an image's failure, the upload's 400, a webhook's lastError): naming the
    # address would map our internal DNS for anyone who asks.
    resolver = fixed({"internal.test": answer})
    client = make_client(resolver=resolver)
    for call in (
        lambda: check_url("https://internal.test/hook", client.policy, resolver=resolver),
        lambda: client.fetch("http://internal.test/a.jpg"),
        lambda: client.post("https://internal.test/hook", b"{}", {}),
    ):
        message = str(refused("ADDRESS_REFUSED", call))
        assert "internal.test" in message and "not public" in message, message
        assert not [name for name in spellings(answer) if name in message], message
    assert dialled == []


def test_a_redirect_to_a_refused_name_is_explained_without_its_address(server, make_client):
    server.routes["/"] = redirect("http://metadata.test/latest/meta-data/")
    client = make_client(server, resolver=fixed({"metadata.test": ["169.254.169.254"]}))
    message = str(refused("ADDRESS_REFUSED", lambda: client.fetch(server.url())))
    assert "metadata.test" in message and "not public" in message and "169.254" not in message


def test_allowlisted_name_skips_only_the_address_check(server, make_client, dialled):
    server.routes["/"] = reply(200, b"ok")
    resolver = fixed({"dev.test": ["127.0.0.1"]})
    client = make_client(resolver=resolver, allowlist={("dev.test", server.port)})
    assert client.fetch(server.url(host="DEV.test")).body == b"ok"
    assert server.requests[0].headers["Host"] == f"dev.test:{server.port}"
    refused("ADDRESS_REFUSED", lambda: client.fetch(f"http://dev.test:{server.port + 1}/"))  # other port
    assert dialled == [("127.0.0.1", server.port)]


def test_connection_goes_to_the_address_that_was_checked(server, make_client, dialled, monkeypatch):
    """DNS rebinding: the name is resolved once per connection, and that checked answer is what is dialled.
    127.0.0.1 stands in for a public address (never dial a real one from a test); 127.0.0.2 is "private"."""
    real = addresses.is_public_address
    monkeypatch.setattr(addresses, "is_public_address", lambda ip: str(ip) == "127.0.0.1" or real(ip))
    calls: list[tuple[str, int]] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return ["127.0.0.1"] if len(calls) == 1 else ["127.0.0.2"]

    server.routes["/"] = reply(200, b"ok")
    client = make_client(resolver=rebinding)
    url = f"http://rebind.test:{server.port}/"
    assert client.fetch(url).body == b"ok"
    assert client.fetch(url).body == b"ok"  # the kept-alive connection to the checked address is reused
    assert calls == [("rebind.test", server.port)]
    assert dialled == [("127.0.0.1", server.port)]
    assert len(server.connections) == 1


def test_earlier_check_url_is_not_trusted_at_connect_time(server, make_client, dialled, monkeypatch):
    real = addresses.is_public_address
    monkeypatch.setattr(addresses, "is_public_address", lambda ip: str(ip) == "127.0.0.1" or real(ip))
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    client = make_client(resolver=rebinding)
    url = f"http://rebind.test:{server.port}/hook"
    check_url(url, client.policy, resolver=rebinding)  # passes: the first answer looks public
    refused("ADDRESS_REFUSED", lambda: client.post(url, b"{}", {}))  # the second answer is checked again
    assert dialled == [] and server.connections == []


def test_peer_address_is_verified_after_connecting(server, make_client, monkeypatch):
    real_getpeername = socket.socket.getpeername
    monkeypatch.setattr(socket.socket, "getpeername", lambda s: ("127.0.0.9", real_getpeername(s)[1]))
    message = str(refused("ADDRESS_REFUSED", lambda: make_client(server).fetch(server.url())))
    monkeypatch.undo()
    assert server.requests == []
    assert "127.0.0.9" not in message and "another address" in message  # the peer is not named


# -------------------------------------------------------------------------------------------- URL checks


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://127.0.0.1/",
        "gopher://127.0.0.1:70/_SLAVEOF",
        "dict://127.0.0.1:11211/stats",
        "data:text/plain,hello",
        "javascript:alert(1)",
        "jar:http://127.0.0.1/x.jar!/",
        "ldap://127.0.0.1/",
    ],
)
def test_other_schemes_refused(url, make_client, dialled):
    assert refused("SCHEME_REFUSED", lambda: make_client().fetch(url)).permanent
    refused("SCHEME_REFUSED", lambda: check_url(url, OutboundPolicy()))
    assert dialled == []


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/a.jpg",
        "/relative/a.jpg",
        "//127.0.0.1/a.jpg",
        "http://",
        "http:///a.jpg",
        "http://exa mple.com/",
        " http://example.com/",
        "http://example.com/a b.jpg",
        "http://example.com/\n",
        "http://example.com\r\nX-Injected: 1/",
        "http://example.com\t/",
        "http://exa\u200bmple.com/",
        "http://example.com\\@127.0.0.1/",
        "http://127.0.0.1:0/",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:port/",
        "http://[::1%25lo]/",
        "http://[::1/",
        "http://*.example.com/",
    ],
)
def test_malformed_urls_refused(url, make_client, dialled):
    assert refused("URL_INVALID", lambda: make_client().fetch(url)).permanent
    refused("URL_INVALID", lambda: check_url(url, OutboundPolicy()))
    assert dialled == []


@pytest.mark.parametrize(
    "template",
    [
        "http://good@127.0.0.1:{port}/",
        "http://user:pass@127.0.0.1:{port}/",
        "http://public.test@127.0.0.1:{port}/",
        "http://public.test:80@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}@public.test/",
        "http://@127.0.0.1:{port}/",
    ],
)
def test_userinfo_tricks_refused(template, server, make_client, dialled):
    server.routes["/"] = reply(200, b"secret")
    client = make_client(server, resolver=fixed({"public.test": ["93.184.216.34"]}))
    url = template.format(port=server.port)
    refused("URL_INVALID", lambda: client.fetch(url))
    refused("URL_INVALID", lambda: client.post(url, b"", {}))
    refused("URL_INVALID", lambda: check_url(url, client.policy))
    assert dialled == [] and server.connections == []


def test_unresolvable_names_are_transient_dns_failures(make_client, dialled):
    assert not refused("DNS_FAILED", lambda: make_client().fetch("http://no-such-host.invalid/")).permanent
    refused("DNS_FAILED", lambda: make_client(resolver=lambda h, p: []).fetch("http://empty.test/"))
    refused("DNS_FAILED", lambda: make_client(resolver=lambda h, p: ["not-an-ip"]).fetch("http://junk.test/"))
    assert dialled == []


PUBLIC_ADDRESSES = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "::ffff:93.184.216.34",
    "64:ff9b::808:808",
    "2002:5db8:d822::1",
]
MORE_NON_PUBLIC_ADDRESSES = [
    "192.0.0.9",
    "192.88.99.1",
    "203.0.113.5",
    "198.51.100.5",
    "0.1.2.3",
    "127.255.255.254",
    "::ffff:0:a00:1",
    "64:ff9b:1::a00:1",
    "100::1",
    "2001:2::1",
    "3fff::1",
    "5f00::1",
    "fe80::1%1",
]


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses(address):
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    sorted({a for answer in NON_PUBLIC_ANSWERS for a in answer} - set(PUBLIC_ADDRESSES)) + MORE_NON_PUBLIC_ADDRESSES,
)
def test_non_public_addresses(address):
    assert not is_public_address(ipaddress.ip_address(address))


# ---------------------------------------------------------------------------------------------- redirects


def test_redirect_to_non_allowlisted_local_server_refused(make_server, make_client, dialled):
    first, second = make_server(), make_server()
    second.routes["/"] = reply(200, b"internal")
    first.routes["/"] = redirect(second.url())
    refused("ADDRESS_REFUSED", lambda: make_client(first).fetch(first.url()))
    assert len(first.requests) == 1
    assert second.connections == []
    assert dialled == [("127.0.0.1", first.port)]


@pytest.mark.parametrize("host", ["2130706433", "localhost", "[::ffff:127.0.0.1]", "127.1"])
def test_redirect_to_another_spelling_of_the_allowlisted_server_refused(host, server, make_client):
    server.routes["/"] = redirect(server.url("/admin", host=host))
    server.routes["/admin"] = reply(200, b"admin")
    refused("ADDRESS_REFUSED", lambda: make_client(server).fetch(server.url()))
    assert [r.path for r in server.requests] == ["/"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://public.test/"])
def test_redirect_to_other_scheme_refused(location, server, make_client):
    server.routes["/"] = redirect(location)
    refused("SCHEME_REFUSED", lambda: make_client(server).fetch(server.url()))


def test_redirect_to_private_name_refused(server, make_client, dialled):
    server.routes["/"] = redirect("http://metadata.test/latest/meta-data/")
    client = make_client(server, resolver=fixed({"metadata.test": ["169.254.169.254"]}))
    refused("ADDRESS_REFUSED", lambda: client.fetch(server.url()))
    assert dialled == [("127.0.0.1", server.port)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_relative_redirects_followed(status, server, make_client):
    server.routes["/a/start"] = redirect("../b/next?x=1", status)
    server.routes["/b/next"] = redirect("/c/final", status)
    server.routes["/c/final"] = reply(200, b"done", {"Content-Type": "text/plain"})
    fetched = make_client(server).fetch(server.url("/a/start"))
    assert (fetched.body, fetched.status, fetched.final_url) == (b"done", 200, server.url("/c/final"))
    assert [r.path for r in server.requests] == ["/a/start", "/b/next?x=1", "/c/final"]
    assert {r.method for r in server.requests} == {"GET"}


def test_redirect_chain_up_to_the_cap_is_followed_and_beyond_it_refused(server, make_client):
    for hop in range(3):
        server.routes[f"/r{hop}"] = redirect(f"/r{hop + 1}")
    server.routes["/r3"] = reply(200, b"end")
    assert make_client(server, max_redirects=3).fetch(server.url("/r0")).body == b"end"
    server.requests.clear()
    client = make_client(server, max_redirects=2)
    assert refused("TOO_MANY_REDIRECTS", lambda: client.fetch(server.url("/r0"))).permanent
    assert [r.path for r in server.requests] == ["/r0", "/r1", "/r2"]


def test_redirect_loop_refused(server, make_client):
    server.routes["/loop"] = redirect("/loop", 307)
    refused("TOO_MANY_REDIRECTS", lambda: make_client(server).fetch(server.url("/loop")))
    assert len(server.requests) == 6  # the first request and 5 redirects


def test_redirect_body_is_not_read(server, make_client):
    def huge_redirect(h: Handler) -> None:
        h.send_response(302)
        h.send_header("Location", "/final")
        h.send_header("Content-Length", str(1024**3))
        h.end_headers()
        h.owner.stop.wait(10)

    server.routes["/"] = huge_redirect
    server.routes["/final"] = reply(200, b"ok")
    started = time.monotonic()
    assert make_client(server, total_timeout=30).fetch(server.url()).body == b"ok"
    assert time.monotonic() - started < 8  # reading the gigabyte would have waited out the server's 10 s stall


# ---------------------------------------------------------------------------------------------- size caps


def test_declared_content_length_over_cap_refused_without_reading(server, make_client):
    server.routes["/"] = declared_too_large
    started = time.monotonic()
    error = refused(
        "TOO_LARGE", lambda: make_client(server, max_bytes=1024 * 1024, total_timeout=30).fetch(server.url())
    )
    assert error.permanent
    assert time.monotonic() - started < 8  # reading on would have waited out the server's 10 s stall


@pytest.mark.parametrize("route", [chunked(40), until_close(2 * 1024 * 1024)], ids=["chunked", "until-close"])
def test_streamed_body_over_cap_aborted(route, server, make_client):
    server.routes["/"] = route
    refused("TOO_LARGE", lambda: make_client(server, max_bytes=200_000).fetch(server.url()))


def test_body_exactly_at_cap_is_accepted(server, make_client):
    server.routes["/exact"] = chunked(1, size=1000)
    server.routes["/over"] = chunked(1, size=1001)
    client = make_client(server, max_bytes=1000)
    assert len(client.fetch(server.url("/exact")).body) == 1000
    refused("TOO_LARGE", lambda: client.fetch(server.url("/over")))


# ------------------------------------------------------------------------------------------------- timing


@pytest.mark.parametrize("route", [trickle_body, trickle_headers], ids=["body", "headers"])
def test_trickling_server_times_out_at_total_timeout(route, server, make_client):
    server.routes["/"] = route
    client = make_client(server, read_timeout=0.5, total_timeout=1.0)
    started = time.monotonic()
    error = refused("TIMEOUT", lambda: client.fetch(server.url()))
    elapsed = time.monotonic() - started
    assert not error.permanent
    assert 0.9 <= elapsed < 8  # the trickle would last 200 s and each byte comes inside the read timeout


def test_total_timeout_spans_redirects(server, make_client):
    def slow_redirect(hop: int) -> Route:
        def route(h: Handler) -> None:
            h.owner.stop.wait(0.3)
            redirect(f"/r{hop + 1}")(h)

        return route

    for hop in range(5):
        server.routes[f"/r{hop}"] = slow_redirect(hop)
    server.routes["/r5"] = reply(200, b"late")
    client = make_client(server, read_timeout=0.5, total_timeout=1.0)
    started = time.monotonic()
    refused("TIMEOUT", lambda: client.fetch(server.url("/r0")))  # each hop is inside the read timeout
    assert time.monotonic() - started >= 0.9
    assert len(server.requests) <= 4  # the last hops were never asked for


def test_server_that_never_answers_times_out_at_read_timeout(server, make_client):
    server.routes["/"] = never_answer
    client = make_client(server, read_timeout=0.5, total_timeout=30)
    started = time.monotonic()
    refused("TIMEOUT", lambda: client.fetch(server.url()))
    assert 0.4 <= time.monotonic() - started < 8  # the total timeout (30 s) did not decide it


def test_closed_port_is_a_transient_connection_failure(make_client, dialled):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(allowlist={("127.0.0.1", port)})
    error = refused("CONNECTION_FAILED", lambda: client.fetch(f"http://127.0.0.1:{port}/"))
    assert not error.permanent
    refused("CONNECTION_FAILED", lambda: client.post(f"http://127.0.0.1:{port}/", b"", {}))


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        *[(404, True), (400, True), (403, True), (410, True), (304, True)],
        *[(408, False), (425, False), (429, False), (500, False), (502, False), (503, False)],
    ],
)
def test_error_status(status, permanent, server, make_client):
    server.routes["/"] = reply(status, b"" if status == 304 else b"nope")
    error = refused("HTTP_STATUS", lambda: make_client(server).fetch(server.url()))
    assert error.permanent is permanent
    assert str(status) in str(error)


# ------------------------------------------------------------------------------------------------ webhooks


def test_post_returns_status_and_sends_body_and_headers(server, make_client):
    server.routes["/hook"] = reply(201, b"created")
    client = make_client(server)
    headers = {"Content-Type": "application/json", "X-Sig": "v1"}
    assert client.post(server.url("/hook"), b'{"done":true}', headers) == 201
    (request,) = server.requests
    assert (request.method, request.path, request.body) == ("POST", "/hook", b'{"done":true}')
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Sig"] == "v1"
    server.routes["/hook"] = reply(500, b"x" * 100_000)  # an error status is returned, not raised
    assert client.post(server.url("/hook"), b"{}", {}) == 500


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_post_does_not_follow_redirects(status, make_server, make_client):
    hook, elsewhere = make_server(), make_server()
    hook.routes["/hook"] = redirect(elsewhere.url("/steal"), status)
    assert make_client(hook, elsewhere).post(hook.url("/hook"), b"{}", {}) == status
    assert elsewhere.connections == []


def test_post_to_silent_server_times_out(server, make_client):
    server.routes["/hook"] = never_answer
    client = make_client(server, read_timeout=0.5, total_timeout=30)
    started = time.monotonic()
    refused("TIMEOUT", lambda: client.post(server.url("/hook"), b"{}", {}))
    assert time.monotonic() - started < 8  # the read timeout decided it, not the total (30 s)


# ---------------------------------------------------------------------------------------------------- TLS


def self_signed(hostname: str, directory: Path) -> Path:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    unused = "content_commitment key_encipherment data_encipherment key_agreement encipher_only decipher_only"
    usage = dict.fromkeys(unused.split(), False)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{hostname}.pem"
    path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture
def tls_server(make_server, tmp_path) -> tuple[LocalServer, Path, list[str | None]]:
    pem = self_signed("public.test", tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server = make_server(tls=context)
    server.routes["/"] = reply(200, b"over tls")
    return server, pem, server_names


def test_https_dials_checked_address_but_verifies_the_url_hostname(tls_server, make_client, dialled):
    server, pem, server_names = tls_server
    resolver = fixed({"public.test": ["127.0.0.1"]})
    client = make_client(resolver=resolver, allowlist={("public.test", server.port)})
    client._session.verify = str(pem)  # trust the test certificate (and nothing else)
    url = server.url(host="public.test", scheme="https")
    assert client.fetch(url).body == b"over tls"
    assert client.fetch(url).body == b"over tls"  # the kept-alive TLS connection is reused
    assert server_names == ["public.test"]
    assert server.requests[0].headers["Host"] == f"public.test:{server.port}"
    assert dialled == [("127.0.0.1", server.port)]
    assert len(server.connections) == 1


def test_https_certificate_must_match_the_url_hostname(tls_server, make_client):
    server, pem, server_names = tls_server
    resolver = fixed({"other.test": ["127.0.0.1"]})
    client = make_client(resolver=resolver, allowlist={("other.test", server.port)})
    client._session.verify = str(pem)
    refused("CONNECTION_FAILED", lambda: client.fetch(server.url(host="other.test", scheme="https")))
    assert server_names == ["other.test"]
    assert server.requests == []


# ------------------------------------------------------------------------------------------------- policy


def test_allowlist_entries_are_normalized():
    policy = OutboundPolicy(allowlist=frozenset({("LocalHost.", 9000), ("[::1]", 80)}))
    assert policy.allowlist == {("localhost", 9000), ("::1", 80)}
    assert OutboundPolicy(**policy.__dict__) == policy  # as ips_runtime.settings builds it


def test_fetch_error_shape():
    error = FetchError("TIMEOUT", "slow", permanent=False)
    assert (error.code, str(error), error.permanent) == ("TIMEOUT", "slow", False)
