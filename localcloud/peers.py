"""The other side of the wire, for the demo, tests and benchmarks: an image server and a webhook receiver."""

from __future__ import annotations

import functools
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook


class _Quiet:
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ImageServer:
    """Serves a folder over HTTP on 127.0.0.1 (the stand-in for the catalogue's image hosts)."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        handler = functools.partial(type("Files", (_Quiet, SimpleHTTPRequestHandler), {}), directory=str(folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True

    @property
    def origin(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.origin}"

    def __enter__(self) -> ImageServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class WebhookReceiver:
    """Verifies each delivery with the `standardwebhooks` library, as a client's receiver would."""

    def __init__(self, secret: str, *, fail_first: int = 0, port: int = 0) -> None:
        self.verifier = Webhook(secret)
        self.deliveries: list[dict[str, Any]] = []  # verified payloads, with their webhook-id
        self.rejected: list[str] = []
        self.attempts = 0
        self._fail_first = fail_first
        self._arrived = threading.Condition()
        receiver = self

        class Handler(_Quiet, BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver._receive(body, {key.lower(): value for key, value in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        with self._arrived:
            self.attempts += 1
            if self.attempts <= self._fail_first:
                return 500
            try:
                payload = self.verifier.verify(body, headers)
            except Exception as exc:
                self.rejected.append(str(exc))
                return 401
            self.deliveries.append({"id": headers["webhook-id"], "payload": payload})
            self._arrived.notify_all()
            return 204

    def wait(self, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    @property
    def origin(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.origin}/hooks/ips"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
