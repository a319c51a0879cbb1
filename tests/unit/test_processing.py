"""One image's rules (ips.processing.image, through the batch that runs it) over in-memory ports: each image ends in one
terminal state, counted once; transient problems are retried until the last delivery, permanent ones fail with
their reason."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ips.processing.fakes import MemoryFetcher, ProcessingFakes
from ips.processing.image import RetryLater
from ips.shared.fetching import FetchError
from ips.shared.model import ImageStatus, ImageTask

URL = "http://images.invalid/mug.png"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def task(url: str = URL, index: int = 0) -> ImageTask:
    return ImageTask("req-1", 2, index, url, "salt", "tenant-a")


def fakes_serving(fetcher: MemoryFetcher) -> ProcessingFakes:
    fakes = ProcessingFakes(fetcher=fetcher)
    fakes.open_request("req-1")
    return fakes


class Flaky(MemoryFetcher):
    """Fails the first `times` fetches with a transient error (a 503 that said to come back in 7 s)."""

    def __init__(self, bodies: dict[str, bytes], times: int) -> None:
        super().__init__(bodies)
        self.times = times

    def fetch(self, url, validators=None, timeout=None):  # type: ignore[no-untyped-def]
        if self.times > 0:
            self.times -= 1
            raise FetchError("HTTP_STATUS", "HTTP 503", permanent=False, retry_after=7.0)
        return super().fetch(url, validators, timeout)


def test_an_image_is_compressed_stored_recorded_and_counted_once() -> None:
    fakes = fakes_serving(MemoryFetcher({URL: png()}))
    [first] = fakes.run_batch(task())
    [again] = fakes.run_batch(task())  # a redelivery
    assert first.count is not None and again.count is not None
    assert (first.count.counted, again.count.counted) == (True, False)
    stored = fakes.catalog.images[("req-1", 2, 0)]
    assert stored.status is ImageStatus.SUCCEEDED and stored.output_url == f"http://assets.invalid/{task().output_key}"
    data, content_type = fakes.processed.objects[task().output_key]
    assert content_type == "image/jpeg" and data[:2] == b"\xff\xd8"  # a JPEG, from the real encoder
    savings = fakes.ledger.counted[("req-1", 2, 0)]
    assert (savings.bytes_in, savings.bytes_out) == (stored.input_bytes, stored.output_bytes) == (len(png()), len(data))


def test_a_permanent_problem_fails_the_image_with_its_reason() -> None:
    fakes = fakes_serving(MemoryFetcher({"http://images.invalid/text.png": b"not an image at all"}))
    fakes.run_batch(task(), task("http://images.invalid/text.png", 1))  # a 404 (not served), and text
    missing, text = (fakes.catalog.images[("req-1", 2, index)] for index in (0, 1))
    assert (missing.status, missing.error_code) == (ImageStatus.FAILED, "HTTP_STATUS")
    assert (text.status, text.error_code) == (ImageStatus.FAILED, "NOT_AN_IMAGE")
    assert fakes.processed.objects == {}  # nothing stored for a failed image
    assert list(fakes.ledger.counted) == [("req-1", 2, 0), ("req-1", 2, 1)]  # each counted (as failed) once


def test_a_transient_problem_is_retried_with_the_sources_delay_then_fails_on_the_last_delivery() -> None:
    fakes = fakes_serving(Flaky({URL: png()}, times=5))
    [retried] = fakes.run_batch(task())
    assert isinstance(retried.error, RetryLater) and retried.error.delay_s == 7.0
    assert fakes.catalog.images == {} and fakes.ledger.counted == {}
    [last] = fakes.run_batch(task(), receive_count=5)
    assert last.count is not None and last.count.counted
    [failed] = fakes.catalog.images.values()
    assert failed.error_code == "HTTP_STATUS" and "gave up after 5 attempts" in (failed.error_message or "")


def test_a_codec_crash_is_retried_and_fails_as_internal_error_on_the_last_delivery(monkeypatch) -> None:
    import ips.processing.image

    def crash(data: bytes, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(ips.processing.image, "compress_image", crash)
    fakes = fakes_serving(MemoryFetcher({URL: png()}))
    [retried] = fakes.run_batch(task())
    assert isinstance(retried.error, MemoryError) and fakes.catalog.images == {}
    fakes.run_batch(task(), receive_count=5)
    [failed] = fakes.catalog.images.values()
    assert (failed.error_code, failed.error_message) == ("INTERNAL_ERROR", "processing failed: MemoryError")


@pytest.mark.parametrize("receive_count", [1, 5])
def test_a_message_for_an_image_its_request_does_not_have_is_retried_not_counted(receive_count: int) -> None:
    """GIVEN a request whose products are known WHEN a message names a row it does not have THEN its record fails
    (it is retried, and the reconciler drops it once dead-lettered) and nothing is counted."""
    from ips.shared.csv_input import ProductRow

    fakes = fakes_serving(MemoryFetcher({URL: png()}))
    fakes.catalog.add_products("req-1", [ProductRow(2, "1", "Mug", (URL,))])
    [good, unknown] = fakes.run_batch(
        task(), ImageTask("req-1", 9, 0, URL, "salt", "tenant-a"), receive_count=receive_count
    )
    assert good.count is not None and good.count.counted
    assert isinstance(unknown.error, LookupError)
    assert list(fakes.ledger.counted) == [("req-1", 2, 0)]
