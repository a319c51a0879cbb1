"""ips.image_batch over in-memory ports and the real engine: each image's result is its own, the compressed and
not yet finished images are bounded, and the same image twice in a batch is never finished twice at once."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from ips.image_batch import BatchImage, ImageBatch
from ips.model import ImageStatus, ImageTask
from ips.processing import Prefetcher, RetryLater
from tests.unit.fakes import Fakes, MemoryBlobStore, MemoryFetcher

BASE = "http://images.invalid"


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (shade, 40, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def image(number: int, *, name: str | None = None, final_attempt: bool = False) -> BatchImage:
    task = ImageTask("req", 2 + number, 0, f"{BASE}/{name or number}.png", "salt")
    return BatchImage(f"message-{number}", task, final_attempt)


class CountingStore(MemoryBlobStore):
    """Tracks how many puts are in progress at once; each put waits until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.in_progress = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self.in_progress += 1
            self.most_at_once = max(self.most_at_once, self.in_progress)
        try:
            assert self.release.wait(10), "the puts were never released"
            super().put(key, data, content_type)
        finally:
            with self._lock:
                self.in_progress -= 1


def run_batch(fakes: Fakes, images: list[BatchImage], *, in_flight: int = 4) -> dict[str, object]:
    ports = fakes.processing()
    prefetcher = Prefetcher(ports, len(images))
    prefetcher.start(batch_image.task for batch_image in images)
    batch = ImageBatch(ports, prefetcher, in_flight=in_flight)
    batch.start(images)
    results: dict[str, object] = {}
    try:
        for batch_image in images:  # as BatchProcessor calls the record handlers: one after another, in order
            try:
                results[batch_image.key] = batch.result(batch_image)
            except Exception as exc:
                results[batch_image.key] = exc
    finally:
        batch.close()
        prefetcher.close()
    return results


def test_each_image_gets_its_own_result_and_a_transient_failure_stays_with_its_record() -> None:
    fakes = Fakes(fetcher=MemoryFetcher({f"{BASE}/{n}.png": png(n * 20) for n in (0, 2, 3)}))
    transient = image(1, name="flaky")
    fakes.fetcher.fetch = _failing_for(fakes.fetcher.fetch, transient.task.url)  # type: ignore[method-assign]
    images = [image(0), transient, image(2), image(3), image(4, name="missing")]
    results = run_batch(fakes, images)
    assert isinstance(results[transient.key], RetryLater)
    assert all(results[i.key].counted for i in images if i is not transient)  # type: ignore[attr-defined]
    states = {key[1]: outcome.status for key, outcome in fakes.catalog.images.items()}
    assert states == {
        2: ImageStatus.SUCCEEDED,
        4: ImageStatus.SUCCEEDED,
        5: ImageStatus.SUCCEEDED,
        6: ImageStatus.FAILED,
    }
    assert set(fakes.ledger.counted) == {("req", row, 0) for row in (2, 4, 5, 6)}


def test_the_same_failure_on_the_final_attempt_fails_the_image_with_its_reason() -> None:
    fakes = Fakes(fetcher=MemoryFetcher({}))
    last = image(1, name="flaky", final_attempt=True)
    fakes.fetcher.fetch = _failing_for(fakes.fetcher.fetch, last.task.url)  # type: ignore[method-assign]
    assert run_batch(fakes, [last])[last.key].counted  # type: ignore[attr-defined]
    [outcome] = fakes.catalog.images.values()
    assert (outcome.status, outcome.error_code) == (ImageStatus.FAILED, "TIMEOUT")


def test_no_more_than_in_flight_images_wait_to_be_finished() -> None:
    store = CountingStore()
    fakes = Fakes(fetcher=MemoryFetcher({f"{BASE}/{n}.png": png(n * 20) for n in range(8)}), processed=store)
    images = [image(n) for n in range(8)]
    finished = threading.Thread(target=lambda: results.update(run_batch(fakes, images, in_flight=3)))
    results: dict[str, object] = {}
    finished.start()
    _wait_for(lambda: store.in_progress == 3)
    store.release.set()
    finished.join(30)
    assert store.most_at_once == 3
    assert len(fakes.ledger.counted) == 8 and len(store.objects) == 8


def test_the_same_image_twice_in_a_batch_is_finished_one_after_the_other() -> None:
    store = CountingStore()
    store.release.set()
    fakes = Fakes(fetcher=MemoryFetcher({f"{BASE}/0.png": png(0)}), processed=store)
    first = image(0)
    again = BatchImage("message-again", first.task, final_attempt=False)
    results = run_batch(fakes, [first, again])
    assert results[first.key].counted and not results[again.key].counted  # type: ignore[attr-defined]
    assert store.most_at_once == 1


def _failing_for(fetch, url: str):  # type: ignore[no-untyped-def]
    from ips.fetching import TIMEOUT, FetchError

    def fetching(target: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if target == url:
            raise FetchError(TIMEOUT, "the source did not answer in time", permanent=False)
        return fetch(target, *args, **kwargs)

    return fetching


def _wait_for(condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    pytest.fail("the condition was never reached")
