"""Fetches get what the invocation has left: a batch of slow sources cannot run past the function's timeout.
Against a real trickling server on 127.0.0.1 and the real outbound client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from ips.processing.fakes import ProcessingFakes
from ips.processing.image import Prefetcher
from ips.shared.fetching import TIMEOUT, FetchError
from ips.shared.model import ImageTask
from ips_adapters.outbound import OutboundClient, OutboundPolicy
from localcloud.peers import LoopbackServer, Quiet

STOP = threading.Event()


class Trickle(Quiet, BaseHTTPRequestHandler):
    """HTTP/1.0 (the handler's default): the response ends with the connection, which http.client closes right
    after the headers; the whole-fetch deadline must still cut the body short (it did not: a trickling
    HTTP/1.0 source held a fetch for as long as it liked)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "1000")
        self.end_headers()
        for _ in range(1000):  # a byte every 0.2 s: each read is quick, the whole never ends in time
            if STOP.wait(0.2):
                return
            self.wfile.write(b"x")
            self.wfile.flush()


@pytest.fixture
def trickling() -> Iterator[LoopbackServer]:
    STOP.clear()
    with LoopbackServer(Trickle) as server:
        try:
            yield server
        finally:
            STOP.set()  # before the server closes: it waits for its handlers


def client_for(server: LoopbackServer) -> OutboundClient:
    host, port = server.origin.split(":")
    # The policy alone would wait 60 s for the whole body.
    return OutboundClient(OutboundPolicy(allowlist=frozenset({(host, int(port))}), total_timeout=60))


def test_a_fetch_is_limited_to_what_the_invocation_has_left(trickling: LoopbackServer) -> None:
    context = ProcessingFakes(fetcher=client_for(trickling)).processing()  # type: ignore[arg-type]
    prefetcher = Prefetcher(context, 2, budget=lambda: 1.0)
    tasks = [ImageTask("r", 2, index, f"{trickling.url}/{index}.jpg", "salt") for index in range(2)]
    prefetcher.start(tasks)
    try:
        for task in tasks:
            with pytest.raises(FetchError) as caught:
                prefetcher.fetch(task)
            assert caught.value.code == TIMEOUT and not caught.value.permanent
            assert "within the 1 s total timeout" in str(caught.value)
    finally:
        prefetcher.close()


def test_no_time_left_means_no_fetch_starts(trickling: LoopbackServer) -> None:
    prefetcher = Prefetcher(ProcessingFakes(fetcher=client_for(trickling)).processing(), 1, budget=lambda: -0.5)  # type: ignore[arg-type]
    try:
        with pytest.raises(FetchError, match="no time left") as caught:
            prefetcher.fetch(ImageTask("r", 2, 0, f"{trickling.url}/0.jpg", "salt"))
        assert caught.value.code == TIMEOUT and not caught.value.permanent  # retried by the queue, not failed
    finally:
        prefetcher.close()


def test_a_batch_fetches_all_its_images_at_once() -> None:
    """One download in flight per image of the batch (it was 8 for batches of 10: two rounds of slow sources):
    every fetch waits until all ten are in flight, which fewer threads could never reach."""
    from ips.shared.fetching import Fetched

    together = threading.Barrier(10, timeout=20)

    class AllAtOnce:
        def fetch(self, url: str, validators: object = None, timeout: float | None = None) -> Fetched:
            together.wait()
            return Fetched(b"not an image", "image/png", url, 200, None)

    fakes = ProcessingFakes(fetcher=AllAtOnce())  # type: ignore[arg-type]
    fakes.open_request("r")
    results = fakes.run_batch(*(ImageTask("r", 2, n, f"http://127.0.0.1:9/{n}.jpg", "salt") for n in range(10)))
    assert all(result.count is not None for result in results)  # each fetched, and failed NOT_AN_IMAGE
