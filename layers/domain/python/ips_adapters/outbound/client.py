"""The outbound client: image downloads (GET, redirects followed by hand) and webhook deliveries (POST)."""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
import requests.exceptions as rexc
import urllib3.exceptions as uexc

from ips.shared.fetching import (
    CONNECTION_FAILED,
    HTTP_STATUS,
    TIMEOUT,
    TOO_LARGE,
    TOO_MANY_REDIRECTS,
    Fetched,
    FetchError,
    retry_after_seconds,
)
from ips_adapters.outbound.addresses import Guard, Resolver
from ips_adapters.outbound.deadline import ACTIVE_DEADLINE, Deadline
from ips_adapters.outbound.policy import OutboundPolicy
from ips_adapters.outbound.transport import GuardedAdapter, GuardedSession
from ips_adapters.outbound.urls import Target, invalid_url, validate_url

if TYPE_CHECKING:
    from ips.processing.ports import SourceValidators

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_4XX = frozenset({408, 425, 429})
_CHUNK = 64 * 1024
_DRAIN_LIMIT = 64 * 1024  # a POST answer smaller than this is read so the connection can be kept alive
_THROTTLING = frozenset({429, 503})  # statuses whose Retry-After says when to come back

_DEFAULT_POLICY = OutboundPolicy()


class OutboundClient:
    """Thread-safe; keep one per process so connections are pooled."""

    def __init__(self, policy: OutboundPolicy = _DEFAULT_POLICY, *, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self._guard = Guard(policy, resolver)
        session = GuardedSession()
        session.trust_env = False  # no proxies, netrc or CA bundles from the environment
        session.proxies = {}
        session.max_redirects = 0
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # strangers' cookies: none kept
        session.headers.clear()
        session.headers.update({"User-Agent": policy.user_agent, "Accept": "*/*", "Accept-Encoding": "identity"})
        session.adapters.clear()
        adapter = GuardedAdapter(self._guard)
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
        deadline = Deadline(self._limit(timeout))
        token = ACTIVE_DEADLINE.set(deadline)
        try:
            return self._fetch(url, deadline, _conditional_headers(validators))
        finally:
            deadline.finish()
            ACTIVE_DEADLINE.reset(token)

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float | None = None) -> int:
        """POST once, within total_timeout (or `timeout`, when shorter: a webhook's); no redirect is followed (a
        3xx is returned as the status). Raises FetchError when refused, timed out or unable to connect."""
        deadline = Deadline(self._limit(timeout))
        token = ACTIVE_DEADLINE.set(deadline)
        try:
            target = validate_url(url)
            response = self._send("POST", target, deadline, data=body, headers=dict(headers))
            try:
                status = response.status_code
                _drain_quietly(response)
                return status
            finally:
                response.close()
        finally:
            deadline.finish()
            ACTIVE_DEADLINE.reset(token)

    def _limit(self, timeout: float | None) -> float:
        """The whole-request limit: the policy's, or the caller's when shorter."""
        return self.policy.total_timeout if timeout is None else max(0.001, min(timeout, self.policy.total_timeout))

    def _fetch(self, url: str, deadline: Deadline, headers: dict[str, str]) -> Fetched:
        current, redirects = url, 0
        while True:
            target = validate_url(current)
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
                    _finish_empty(response)
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

    def _send(self, method: str, target: Target, deadline: Deadline, **kwargs: Any) -> requests.Response:
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

    def _read_body(self, response: requests.Response, target: Target, deadline: Deadline) -> bytes:
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


def _finish_empty(response: requests.Response) -> None:
    """Read to the end of an answer that has no body (a 304), so its connection goes back to the pool instead of
    being closed: a catalogue's second upload is one conditional GET per image to the same few hosts."""
    with contextlib.suppress(Exception):  # the answer is what the caller wants; keeping the connection is a bonus
        response.raw.read(decode_content=False)


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


def _timeout(target: Target, policy: OutboundPolicy, *, whole: bool = True, limit: float | None = None) -> FetchError:
    if whole:
        seconds = policy.total_timeout if limit is None else limit
        message = f"{target.origin} did not finish within the {seconds:g} s total timeout"
    else:
        message = f"{target.origin} did not connect or answer in time ({_timeouts(policy)})"
    return FetchError(TIMEOUT, message, permanent=False)


def _timeouts(policy: OutboundPolicy) -> str:
    return f"connect {policy.connect_timeout:g} s, read {policy.read_timeout:g} s"


def _translate(exc: Exception, target: Target, deadline: Deadline, policy: OutboundPolicy) -> FetchError | None:
    """The FetchError for a network-level failure, or None for anything else (a bug: let it propagate)."""
    if deadline.expired:
        return _timeout(target, policy, limit=deadline.seconds)
    if isinstance(exc, rexc.InvalidURL | rexc.MissingSchema | rexc.InvalidSchema | rexc.URLRequired):
        return invalid_url(f"URL refused by the HTTP client: {exc}")
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


def check_url(url: str, policy: OutboundPolicy, *, resolver: Resolver | None = None) -> None:
    """Validate a URL (scheme, host, every resolved address) without connecting; raises FetchError. Used to
    refuse webhook URLs at upload time. Passing says nothing about later: DNS may change, which is why the
    connection layer checks again, at the moment it connects."""
    target = validate_url(url)
    Guard(policy, resolver).checked_addresses(target.host, target.port)
