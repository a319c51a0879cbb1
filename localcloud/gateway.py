"""An HTTP gateway on 127.0.0.1 that behaves like the API Gateway REST API of the topology.

It matches routes, requires an API key from API_KEYS (each key its own tenant), throttles per key like the
usage plan (token bucket: rate and burst; daily quota), refuses oversized bodies, turns each request into an
API Gateway proxy event for the route's function, and answers with the function's result. The payload limits
are AWS's (the topology's `PayloadLimits`): a body over API Gateway's 10 MiB or an event over Lambda's 6 MiB
is 413, a function result over Lambda's 6 MiB is 502, as in AWS. It answers CORS preflights and puts CORS
headers on its own errors for the web page's origin, as the deployed API does. It also serves the OpenAPI
document and Swagger UI, and, in CloudFront's role, the processed bucket's objects under /assets/ and the upload
page (web/) under /app/."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from infra.topology import GatewayResponse, Route, Topology
from localcloud.lambda_host import Invocable
from localcloud.openapi import swagger_page
from localcloud.settings import ApiKey

logger = logging.getLogger("localcloud.gateway")
ASSETS_PREFIX = "/assets/"
OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
API_GATEWAY_INTERNAL_ERROR = {"message": "Internal server error"}  # API Gateway's own body for a failed integration
APP_PREFIX = "/app/"
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WEB_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
CORS_HEADERS = "content-type,x-api-key"


def api_key_id(key: str) -> str:
    """A stable id per key, like API Gateway's apiKeyId: the tenant, never the secret itself."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def api_event(
    route: Route,
    path: str,
    query: str,
    path_parameters: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    api_key: str,
    client: str = "127.0.0.1",
    stage: str = "v1",
    binary_media_types: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The API Gateway REST (v1) proxy integration event for one request."""
    query_values = parse_qs(query, keep_blank_values=True)
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    # API Gateway base64-encodes bodies of the binary media types; so do we, and anything that is not UTF-8.
    binary = media_type in binary_media_types
    text: str | None = None
    if not binary:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            binary = True
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": route.method,
        "headers": dict(headers),
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": {key: values[-1] for key, values in query_values.items()} or None,
        "multiValueQueryStringParameters": query_values or None,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "resourcePath": route.path,
            "httpMethod": route.method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": "HTTP/1.1",
            "identity": {
                "apiKey": api_key,
                "apiKeyId": api_key_id(api_key),
                "sourceIp": client,
                "userAgent": headers.get("user-agent"),
            },
        },
        "body": (base64.b64encode(body).decode() if binary else text) if body else None,
        "isBase64Encoded": bool(body) and binary,
    }


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass
class _Tenant:
    bucket: TokenBucket
    day: str = ""
    used_today: int = 0


@functools.cache
def _route_pattern(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{regex}$")


def match_route(routes: Iterable[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a request and its path parameters, as API Gateway's resource matching finds them."""
    for route in routes:
        found = _route_pattern(route.path).match(path)
        if route.method == method and found:
            return route, found.groupdict()
    return None


class Gateway:
    def __init__(
        self,
        topology: Topology,
        functions: Mapping[str, Invocable],
        api_keys: list[ApiKey],
        read_asset: Callable[[str], tuple[bytes, str, str | None] | None],  # bytes, type, Cache-Control
        openapi: Callable[[], dict[str, Any]],
        *,
        port: int = 5000,
        rate: float | None = None,
        burst: int | None = None,
        web_origin: str | None = None,
    ) -> None:
        plan = topology.usage_plan
        self.topology = topology
        self.functions = functions
        self.tenants: dict[str, _Tenant] = {}
        for api_key in api_keys:
            # A key without a plan of its own is throttled by the usage plan's (or the rate and burst given).
            key_rate = api_key.rate if api_key.rate is not None else rate or plan.rate_per_second
            key_burst = api_key.burst if api_key.burst is not None else burst or plan.burst
            self.tenants[api_key.key] = _Tenant(TokenBucket(key_rate, key_burst))
        self.read_asset = read_asset
        self.openapi = openapi
        self._spec: dict[str, Any] | None = None
        # Bound now (its port names the asset URLs the functions are given), listening only once started: a
        # client that connects earlier is refused, not left waiting while the functions warm up.
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class(), bind_and_activate=False)
        self._server.daemon_threads = True
        try:
            self._server.server_bind()
        except BaseException:
            self._server.server_close()
            raise
        self._thread: threading.Thread | None = None
        # The origin the API's CORS headers allow: the upload page's, by default this gateway's own (/app/).
        self.web_origin = web_origin or self.url

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.server_activate()
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()

    def spec(self) -> dict[str, Any]:
        if self._spec is None:
            self._spec = self.openapi()
        return self._spec

    # -- request handling -------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, client: str
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(target)
        path = unquote(split.path)
        if method == "GET" and path == OPENAPI_PATH:
            return 200, {"content-type": "application/json"}, json.dumps(self.spec()).encode()
        if method == "GET" and path == DOCS_PATH:
            return 200, {"content-type": "text/html; charset=utf-8"}, swagger_page(self.spec()).encode()
        if method in ("GET", "HEAD") and path.startswith(ASSETS_PREFIX):
            return self._asset(path.removeprefix(ASSETS_PREFIX))
        if method in ("GET", "HEAD") and path in ("/", APP_PREFIX.rstrip("/")):
            return 302, {"location": APP_PREFIX}, b""
        if method in ("GET", "HEAD") and path.startswith(APP_PREFIX):
            return self._web_file(path.removeprefix(APP_PREFIX))
        if method == "OPTIONS" and any(_route_pattern(route.path).match(path) for route in self.topology.routes):
            # API Gateway's CORS preflight (a mock integration): no API key, no function.
            return 204, self._cors_headers(headers, preflight=True), b""
        match = match_route(self.topology.routes, method, path)
        if match is None:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", headers)
        route, path_parameters = match
        tenant = self.tenants.get(headers.get("x-api-key", ""))
        if tenant is None:
            return self._gateway_response("INVALID_API_KEY", headers)
        if not tenant.bucket.take():
            return self._gateway_response("THROTTLED", headers)
        if not self._within_quota(tenant):
            return self._gateway_response("QUOTA_EXCEEDED", headers)
        if len(body) > self.topology.max_body_bytes:
            return self._gateway_response("REQUEST_TOO_LARGE", headers)
        event = api_event(
            route,
            path,
            split.query,
            path_parameters,
            headers,
            body,
            api_key=headers["x-api-key"],
            client=client,
            stage=self.topology.stage,
            binary_media_types=self.topology.binary_media_types,
        )
        limits = self.topology.payload_limits
        if len(json.dumps(event)) > limits.invoke_request_bytes:
            # Lambda refuses the invocation (RequestEntityTooLargeException); API Gateway answers 413.
            return self._gateway_response("REQUEST_TOO_LARGE")
        result = self.functions[route.function].invoke(event)
        if len(json.dumps(result)) > limits.invoke_response_bytes:
            # Lambda fails the invocation ("Response payload size exceeded"); API Gateway answers 502.
            logger.error("%s answered %s %s with more than Lambda's response payload", route.function, method, path)
            return 502, {"content-type": "application/json"}, json.dumps(API_GATEWAY_INTERNAL_ERROR).encode()
        response_headers = {key.lower(): str(value) for key, value in (result.get("headers") or {}).items()}
        for key, values in (result.get("multiValueHeaders") or {}).items():
            response_headers[key.lower()] = ", ".join(map(str, values))
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        return int(result["statusCode"]), response_headers, data

    def _within_quota(self, tenant: _Tenant) -> bool:
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        if tenant.day != today:
            tenant.day, tenant.used_today = today, 0
        tenant.used_today += 1
        return tenant.used_today <= self.topology.usage_plan.quota_per_day

    def _gateway_response(
        self, kind: str, request_headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        response: GatewayResponse = self.topology.gateway_responses[kind]
        body = json.dumps({"code": response.code, "message": response.message, "errors": []}).encode()
        headers = {"content-type": "application/json", **self._cors_headers(request_headers or {})}
        return response.status, headers, body

    def _cors_headers(self, request_headers: Mapping[str, str], *, preflight: bool = False) -> dict[str, str]:
        """What the deployed API answers a browser at the page's origin (the gateway responses carry them too)."""
        if not self.web_origin or request_headers.get("origin") != self.web_origin:
            return {}
        headers = {"access-control-allow-origin": self.web_origin, "vary": "origin"}
        if preflight:
            methods = sorted({route.method for route in self.topology.routes} | {"OPTIONS"})
            headers |= {
                "access-control-allow-methods": ",".join(methods),
                "access-control-allow-headers": CORS_HEADERS,
                "access-control-max-age": "600",
            }
        return headers

    def _web_file(self, name: str) -> tuple[int, dict[str, str], bytes]:
        """The upload page's static files, and its config.json (the API is this origin)."""
        if name == "config.json":
            return 200, {"content-type": "application/json", "cache-control": "no-store"}, b'{"apiUrl": ""}'
        served = {path.name: path for path in WEB_DIR.iterdir() if path.suffix in WEB_TYPES}
        found = served.get(name or "index.html")
        if found is None:
            body = json.dumps({"code": "NOT_FOUND", "message": "No such page."}).encode()
            return 404, {"content-type": "application/json"}, body
        return 200, {"content-type": WEB_TYPES[found.suffix], "cache-control": "no-cache"}, found.read_bytes()

    def _asset(self, key: str) -> tuple[int, dict[str, str], bytes]:
        found = self.read_asset(key) if key and ".." not in key.split("/") else None
        if found is None:
            body = json.dumps({"code": "NOT_FOUND", "message": "No such object."}).encode()
            return 404, {"content-type": "application/json"}, body
        data, content_type, cache_control = found
        # As CloudFront does: the object's own Cache-Control (the process function stores it with each image).
        headers = {"content-type": content_type}
        if cache_control:
            headers["cache-control"] = cache_control
        return 200, headers, data

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "ips-local-gateway"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > gateway.topology.max_body_bytes:
                    # Drain (without keeping) what the client sends so it reads the 413 instead of a reset.
                    remaining = length if length <= 8 * gateway.topology.max_body_bytes else 0
                    while remaining > 0 and (chunk := self.rfile.read(min(1 << 16, remaining))):
                        remaining -= len(chunk)
                    status, headers, data = gateway._gateway_response("REQUEST_TOO_LARGE")
                    self.close_connection = True
                else:
                    body = self.rfile.read(length) if length else b""
                    request_headers = {key.lower(): value for key, value in self.headers.items()}
                    try:
                        status, headers, data = gateway.handle(
                            self.command, self.path, request_headers, body, self.client_address[0]
                        )
                    except Exception:
                        logger.exception("gateway failed to serve %s %s", self.command, self.path)
                        status, headers = 502, {"content-type": "application/json"}
                        data = json.dumps({"code": "BAD_GATEWAY", "message": "The function failed."}).encode()
                self.send_response(status)
                for key, value in headers.items():
                    if key not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s " + format, self.client_address[0], *args)

        return Handler
