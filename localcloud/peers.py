"""The other side of the wire, for the demo, tests and benchmarks: an image server and a webhook receiver."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from standardwebhooks import Webhook


class Quiet:
    """A request handler mixin that keeps the console clean."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer:
    """An HTTP server on 127.0.0.1 serving in a background thread for the length of a `with` block."""

    def __init__(self, handler: Callable[..., BaseHTTPRequestHandler], port: int = 0) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True

    @property
    def origin(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.origin}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class ImageServer(LoopbackServer):
    """Serves a folder over HTTP on 127.0.0.1 (the stand-in for the catalogue's image hosts)."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        super().__init__(
            functools.partial(type("Files", (Quiet, SimpleHTTPRequestHandler), {}), directory=str(folder)), port
        )


class WebhookReceiver(LoopbackServer):
    """Verifies each delivery with the `standardwebhooks` library, as a client's receiver would. `silent`: it reads
    each request and never answers (holding the connection until it stops), as a broken receiver can."""

    def __init__(self, secret: str | None = None, *, fail_first: int = 0, silent: bool = False, port: int = 0) -> None:
        # Without a secret (until use_secret) every delivery is refused: nothing unverified is ever accepted.
        self.verifier = Webhook(secret) if secret else None
        self.deliveries: list[dict[str, Any]] = []  # verified payloads, with their webhook-id
        self.rejected: list[str] = []
        self.attempts = 0
        self._fail_first = fail_first
        self._arrived = threading.Condition()
        self._silent = threading.Event() if silent else None
        receiver = self

        class Handler(Quiet, BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver._silent is not None:
                    with receiver._arrived:
                        receiver.attempts += 1
                    receiver._silent.wait()  # never answers; the connection closes when the receiver stops
                    return
                status = receiver._receive(body, {key.lower(): value for key, value in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        super().__init__(Handler, port)

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        with self._arrived:
            self.attempts += 1
            if self.attempts <= self._fail_first:
                return 500
            try:
                if self.verifier is None:
                    raise ValueError("no secret to verify with yet")
                payload = self.verifier.verify(body, headers)
            except Exception as exc:
                self.rejected.append(str(exc))
                return 401
            self.deliveries.append({"id": headers["webhook-id"], "payload": payload})
            self._arrived.notify_all()
            return 204

    def __exit__(self, *exc: object) -> None:
        if self._silent is not None:
            self._silent.set()
        super().__exit__(*exc)

    def use_secret(self, secret: str) -> None:
        """Verify with another secret from now on (a tenant's, read from the API once the cloud is up)."""
        self.verifier = Webhook(secret)

    def wait(self, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    @property
    def url(self) -> str:
        return f"http://{self.origin}/hooks/ips"
