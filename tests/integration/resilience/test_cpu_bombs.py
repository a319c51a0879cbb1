"""CPU bombs through the whole pipeline: each fails with TOO_COMPLEX, refused from its container before any
decoding, and the rest of the batch succeeds (before, the progressive JPEG alone took the invocation past its
timeout on every delivery, and the other images of its batch with it)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from PIL import Image

from ips.processing.image import RetryLater
from ips.processing.service import Delivery, run_batch
from ips.shared.model import ImageStatus, ImageTask
from ips_runtime.adapters import Adapters
from ips_runtime.roots import PROCESS, reset_roots
from localcloud.peers import LoopbackServer, Quiet
from tests.integration.conftest import Pipeline
from tests.integration.resilience.conftest import assert_consistent, settle, upload
from tests.integration.test_api_handlers import HEADER
from tests.unit.test_image_complexity import encoded, gif_first_image, png_chunk, scan_bomb


def bombs() -> dict[str, bytes]:
    png = encoded(Image.new("RGB", (8, 8)), "PNG")
    gif = encoded(Image.new("P", (8, 8)), "GIF")
    first_image, _ = gif_first_image(gif)
    jpeg = encoded(Image.new("RGB", (8, 8)), "JPEG")
    return {
        # The issue's: 7000x7000 grey, progressive, its last scan repeated 300 times (214 kB, 9 s of CPU).
        "progressive-bomb.jpg": scan_bomb(7000, 7000, 300),
        "empty-segments.jpg": jpeg[:2] + b"\xff\xfe\x00\x02" * 30_000 + jpeg[2:],
        "empty-chunks.png": png[:33] + png_chunk(b"quUx") * 30_000 + png[33:],
        "comment-blocks.gif": gif[:first_image] + b"\x21\xfe\x01x\x00" * 30_000 + gif[first_image:],
        "jpeg-in.tif": encoded(Image.new("RGB", (64, 64), (9, 99, 199)), "TIFF", compression="jpeg"),
    }


class BombServer(LoopbackServer):
    def __init__(self, corpus: Path) -> None:
        files = {**bombs(), **{name: (corpus / name).read_bytes() for name in ("sk_rocket.jpg", "sk_coffee.png")}}

        class Handler(Quiet, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = files[self.path.lstrip("/")]
                self.send_response(200)
                self.send_header("content-type", "application/octet-stream")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


@pytest.fixture
def bomb_server(corpus: Path, monkeypatch, function_env, receiver) -> Iterator[BombServer]:
    with BombServer(corpus) as server:
        monkeypatch.setenv(
            "OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{receiver.origin},{server.origin}"
        )
        reset_roots()
        yield server


EXPECTED = {
    "sk_rocket.jpg": None,
    "progressive-bomb.jpg": "TOO_COMPLEX",
    "empty-segments.jpg": "TOO_COMPLEX",
    "sk_coffee.png": None,
    "empty-chunks.png": "TOO_COMPLEX",
    "comment-blocks.gif": "TOO_COMPLEX",
    "jpeg-in.tif": "UNSUPPORTED_FORMAT",
}


def test_cpu_bombs_fail_too_complex_and_the_rest_of_the_batch_succeeds(
    pipeline: Pipeline, bomb_server: BombServer, receiver
) -> None:
    names = list(EXPECTED)
    # One product holds every image: they travel in the same batches as the bombs.
    urls = ",".join(f"http://{bomb_server.origin}/{name}" for name in names)
    request_id = upload(pipeline, HEADER + f'1,Everything,"{urls}"\n', receiver.url)
    status = settle(pipeline, request_id, timeout=60)
    [product] = status["products"]
    outcomes = {name: None for name in names} | {names[error["index"]]: error["code"] for error in product["errors"]}
    assert outcomes == EXPECTED
    assert status["status"] == "COMPLETED_WITH_ERRORS" and status["succeeded"] == 2
    refused = [error for error in product["errors"] if error["code"] == "TOO_COMPLEX"]
    assert all("refused before decoding" in error["message"] for error in refused)
    assert_consistent(pipeline, request_id, status)
    assert len(receiver.wait(1, timeout=10)) == 1


def test_running_into_the_invocations_deadline_is_retried_then_fails_too_complex(
    pipeline: Pipeline, bomb_server: BombServer, receiver
) -> None:
    request_id = upload(pipeline, HEADER + f"1,Rocket,http://{bomb_server.origin}/sk_rocket.jpg\n", receiver.url)
    pipeline.chunk_runner().poll_once()  # the chunk: the product exists
    task = ImageTask(request_id, 2, 0, f"http://{bomb_server.origin}/sk_rocket.jpg", "salt")
    root = PROCESS()
    too_late = time.monotonic() - 1  # the invocation has no time left to decode in
    for receive_count in (1, root.images.max_receive_count):
        [handled] = run_batch(
            [Delivery("m", task.to_message(), receive_count)], root.images, root.requests, decode_deadline=too_late
        ).values()
        if receive_count == 1:
            assert isinstance(handled.error, RetryLater) and "TOO_COMPLEX" in str(handled.error)
        else:
            assert handled.count is not None and handled.count.counted
    [product] = Adapters.from_env().catalog.products(request_id)
    [image] = product.images
    assert image is not None and (image.status, image.error_code) == (ImageStatus.FAILED, "TOO_COMPLEX")
    assert "deadline" in (image.error_message or "")


def test_the_bombs_are_small() -> None:
    # What makes them bombs: every one is far under the byte cap (25 MiB) and the pixel cap.
    for name, data in bombs().items():
        assert len(data) < 1_000_000, name
        with Image.open(io.BytesIO(data)) as image:
            assert image.width * image.height <= 50_000_000, name
