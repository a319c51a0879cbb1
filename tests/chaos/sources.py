"""The image hosts of the chaos run, on 127.0.0.1: small generated images (the run is about the pipeline, not the
codec), served well, slowly, after failures, by resetting connections, trickling past the time limit, or not
at all (404, and a port where nothing listens)."""

from __future__ import annotations

import io
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler

from PIL import Image

from localcloud.peers import LoopbackServer, Quiet
from localcloud.servers import free_port

# kind -> share of the URLs (the rest are "ok")
KINDS = {"slow": 0.05, "flaky": 0.04, "reset": 0.02, "gone": 0.02, "dead": 0.01, "trickle": 0.005}


def generated_images(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        size = rng.randint(24, 64), rng.randint(24, 64)
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(6):  # a little structure, so JPEG has something to do
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            image.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, min(size[0], x + 8), min(size[1], y + 8)))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images


class ChaosSources(LoopbackServer):
    def __init__(self, seed: int) -> None:
        self.images = generated_images(16, seed)
        self.dead_origin = f"127.0.0.1:{free_port()}"  # nothing listens there
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        sources = self

        class Handler(Quiet, BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sources.answer(self)

        super().__init__(Handler)

    def url(self, kind: str, number: int) -> str:  # type: ignore[override]
        if kind == "dead":
            return f"http://{self.dead_origin}/{number}.png"
        return f"http://{self.origin}/{kind}/{number}.png"

    def _times_seen(self, path: str) -> int:
        with self._lock:
            self._seen[path] = self._seen.get(path, 0) + 1
            return self._seen[path]

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        _, kind, name = handler.path.split("/", 2)
        number = int(name.split(".")[0])
        body = self.images[number % len(self.images)]
        seen = self._times_seen(handler.path)
        if kind == "gone":
            return self._send(handler, 404, b"")
        if kind == "flaky" and seen <= 2:
            return self._send(handler, 503, b"")
        if kind == "reset" and seen <= 1:
            # RST instead of an answer: SO_LINGER 0 and close.
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            return None
        if kind == "slow":
            time.sleep(0.2 + (number % 7) / 5)
        if kind == "trickle":
            handler.send_response(200)
            handler.send_header("content-length", str(len(body)))
            handler.end_headers()
            for start in range(0, len(body), 16):  # far slower than the fetch's whole-request limit
                try:
                    handler.wfile.write(body[start : start + 16])
                    handler.wfile.flush()
                except OSError:
                    return None
                time.sleep(0.5)
            return None
        return self._send(handler, 200, body, "image/png")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "text/plain") -> None:
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def pick_kind(rng: random.Random) -> str:
    roll, total = rng.random(), 0.0
    for kind, share in KINDS.items():
        total += share
        if roll < total:
            return kind
    return "ok"
