"""Hostile images and URLs through the whole pipeline: each image ends succeeded or failed with its reason
within its time cap, and the worker goes on (no crash, no stuck request)."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ips_runtime.roots import reset_roots
from localcloud.peers import LoopbackServer, Quiet
from tests.integration.conftest import Pipeline
from tests.integration.resilience.conftest import assert_consistent, settle
from tests.integration.test_api_handlers import HEADER, multipart

IMAGE_CAP = 1024 * 1024


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes that declare 900 megapixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def payloads(corpus: Path) -> dict[str, tuple[str, bytes]]:
    photo = (corpus / "sk_rocket.jpg").read_bytes()
    sixteen_bit = Image.new("I;16", (64, 48))
    sixteen_bit.putdata([(x * 1000) % 65536 for x in range(64 * 48)])
    absurd_exif = Image.Exif()
    absurd_exif[0x010E] = "x" * 60_000  # ImageDescription: a 60 kB EXIF block
    absurd_exif[0x0112] = 9  # an orientation that does not exist
    return {
        "bomb.png": ("image/png", png_bomb()),
        "truncated.jpg": ("image/jpeg", photo[: len(photo) // 2]),
        "text.jpg": ("image/jpeg", b"just some text, not a picture"),
        "page.jpg": ("image/jpeg", b"<!doctype html><html><body>Not found</body></html>"),
        "huge.jpg": ("image/jpeg", b"\xff\xd8" + b"\x00" * (IMAGE_CAP + 10)),
        "gray16.png": ("image/png", encoded(sixteen_bit, "PNG")),
        "animated.gif": ("image/gif", (corpus / "sk_no_time_for_that_tiny.gif").read_bytes()),
        "cmyk-progressive.jpg": (
            "image/jpeg",
            encoded(Image.open(corpus / "sk_rocket.jpg").convert("CMYK"), "JPEG", progressive=True, quality=80),
        ),
        "absurd-exif.jpg": ("image/jpeg", encoded(Image.open(corpus / "sk_rocket.jpg"), "JPEG", exif=absurd_exif)),
    }


class HostileServer(LoopbackServer):
    def __init__(self, corpus: Path) -> None:
        files = payloads(corpus)

        class Handler(Quiet, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                if name == "trickle.jpg":  # one byte every half second: never finishes in time
                    self.send_response(200)
                    self.send_header("content-length", "100000")
                    self.end_headers()
                    for _ in range(40):
                        try:
                            self.wfile.write(b"\xff")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.5)
                    return
                if name == "silent.jpg":  # accepts the connection, never answers
                    time.sleep(6)
                    return
                content_type, body = files[name]
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


@pytest.fixture
def hostile(corpus: Path, monkeypatch, function_env, receiver) -> Iterator[HostileServer]:
    with HostileServer(corpus) as server:
        monkeypatch.setenv(
            "OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{receiver.origin},{server.origin}"
        )
        monkeypatch.setenv("IMAGE_MAX_BYTES", str(IMAGE_CAP))
        monkeypatch.setenv("OUTBOUND_READ_TIMEOUT", "1")
        monkeypatch.setenv("OUTBOUND_TOTAL_TIMEOUT", "2")
        reset_roots()
        yield server


EXPECTED = {
    "bomb.png": "TOO_MANY_PIXELS",
    "truncated.jpg": "CORRUPT_IMAGE",
    "text.jpg": "NOT_AN_IMAGE",
    "page.jpg": "NOT_AN_IMAGE",
    "huge.jpg": "TOO_LARGE",
    "trickle.jpg": "TIMEOUT",
    "silent.jpg": "TIMEOUT",
    "gray16.png": None,
    "animated.gif": None,
    "cmyk-progressive.jpg": None,
    "absurd-exif.jpg": None,
}


def test_hostile_images_each_end_with_their_reason(pipeline: Pipeline, hostile: HostileServer, receiver) -> None:
    names = list(EXPECTED)
    rows = "".join(f"{n},Item {n},http://{hostile.origin}/{name}\n" for n, name in enumerate(names, start=1))
    body, headers = multipart(HEADER + rows, receiver.url)
    _, accepted = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    status = settle(pipeline, accepted["requestId"], timeout=60)
    outcomes = {
        name: (product["errors"][0]["code"] if product["errors"] else None)
        for name, product in zip(names, status["products"], strict=True)
    }
    assert outcomes == EXPECTED
    assert_consistent(pipeline, accepted["requestId"], status)
    assert len(receiver.wait(1, timeout=10)) == 1


@pytest.mark.parametrize(
    "webhook",
    [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://good.example@127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
    ],
)
def test_webhook_urls_to_private_places_are_refused_at_upload(pipeline: Pipeline, image_server, webhook: str) -> None:
    body, headers = multipart(HEADER + f"1,Mug,{image_server.url}/sk_rocket.jpg\n", webhook)
    status, answer = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    assert (status, answer["code"]) == (400, "WEBHOOK_URL_INVALID")
    assert pipeline.queued() == 0
