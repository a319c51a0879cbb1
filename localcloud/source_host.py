"""A catalogue's image host for tests and benchmarks: serves a folder on 127.0.0.1 with validators (ETag,
Last-Modified, answering 304 to conditional GETs), counts what it served, and can be told to answer 429 or 503
with Retry-After, or to answer slowly, to see how politely the service fetches."""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from localcloud.peers import LoopbackServer, Quiet


@dataclass
class HostStats:
    requests: int = 0
    bytes_sent: int = 0  # body bytes of 200 answers
    not_modified: int = 0
    refused: int = 0  # 429 / 503 answers
    in_flight: int = 0
    peak_in_flight: int = 0
    user_agents: Counter[str] = field(default_factory=Counter)


class SourceHost(LoopbackServer):
    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = folder
        self.stats = HostStats()
        self.delay_s = 0.0  # added before every answer (a slow host)
        # Distinct sources from one file: `?v=...` bytes appended after the image's end (decoders ignore them).
        self.distinct_queries = False
        self._refusals: dict[str, tuple[int, int, str]] = {}  # path -> (answers left, status, Retry-After)
        self._lock = threading.Lock()
        self._modified = email.utils.formatdate(time.time() - 86_400, usegmt=True)
        host = self

        class Handler(Quiet, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a CDN answers: a fetch need not open a connection

            def do_GET(self) -> None:
                host._answer(self)

        super().__init__(Handler, port)

    def refuse(self, path: str, times: int, *, status: int = 429, retry_after: str = "1") -> None:
        """Answer the next `times` GETs of `path` with `status` and a Retry-After header."""
        with self._lock:
            self._refusals[path] = (times, status, retry_after)

    def reset(self) -> None:
        with self._lock:
            self.stats = HostStats()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path, _, query = request.path.partition("?")
        with self._lock:
            stats = self.stats
            stats.requests += 1
            stats.in_flight += 1
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
            stats.user_agents[request.headers.get("user-agent", "")] += 1
            left, status, retry_after = self._refusals.get(path, (0, 0, ""))
            if left:
                self._refusals[path] = (left - 1, status, retry_after)
                stats.refused += 1
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            if left:
                self._send(request, status, {"Retry-After": retry_after})
                return
            file = (self.folder / path.lstrip("/")).resolve()
            if not file.is_relative_to(self.folder.resolve()) or not file.is_file():
                self._send(request, 404)
                return
            body = file.read_bytes()
            if self.distinct_queries and query:
                body += b"\0" + query.encode()
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            validators = {"ETag": etag, "Last-Modified": self._modified}
            if request.headers.get("if-none-match") == etag or (
                request.headers.get("if-none-match") is None
                and request.headers.get("if-modified-since") == self._modified
            ):
                with self._lock:
                    stats.not_modified += 1
                self._send(request, 304, validators)
                return
            with self._lock:
                stats.bytes_sent += len(body)
            self._send(request, 200, {**validators, "Content-Type": "application/octet-stream"}, body)
        finally:
            with self._lock:
                stats.in_flight -= 1

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler, status: int, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        if status != 304:
            request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if body:
            request.wfile.write(body)
