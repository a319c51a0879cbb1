"""The batch rules of ips.processing.service.run_batch over in-memory ports and the real engine: a batch is one unit of
I/O (one catalog write, one ledger call), each record is told what became of it alone, the same image twice is
processed and counted once, and a crash between the steps (after the puts, after the catalog write, after the
count) never loses a count or counts one twice."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from PIL import Image

from ips.processing.fakes import MemoryFetcher, ProcessingFakes
from ips.processing.image import RetryLater
from ips.processing.service import STORE_IN_FLIGHT, Delivery, Removed
from ips.processing.settle import DUPLICATE
from ips.shared.fakes import MemoryBlobStore
from ips.shared.fetching import TIMEOUT, FetchError
from ips.shared.model import ChunkTask, ImageStatus, ImageTask

BASE = "http://images.invalid"
REQUEST = "req"


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (shade, 40, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def image(number: int, *, name: str | None = None) -> ImageTask:
    return ImageTask(REQUEST, 2 + number, 0, f"{BASE}/{name or number}.png", "salt", "tenant-a")


def serving(count: int, **fakes: Any) -> ProcessingFakes:
    world = ProcessingFakes(fetcher=MemoryFetcher({f"{BASE}/{n}.png": png(n * 20) for n in range(count)}), **fakes)
    world.open_request(REQUEST, total=count)
    return world


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


class FailingOnce:
    """Wraps a port: `method` raises `error` on its first call, before (`after=False`) or after doing its work."""

    def __init__(self, real: Any, method: str, error: Exception, *, after: bool = False) -> None:
        self._real, self._method, self._error, self._after = real, method, error, after
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name != self._method or self.failed:
            return attribute

        def failing(*args: Any, **kwargs: Any) -> Any:
            self.failed = True
            if self._after:
                attribute(*args, **kwargs)
            raise self._error

        return failing


def test_a_batch_is_recorded_in_one_catalog_write_and_counted_in_one_ledger_call() -> None:
    """GIVEN ten images of one request WHEN their batch runs THEN each is stored, recorded and counted, with one
    catalog write and one ledger call for all ten, one reuse-index lookup by URL and one write of their entries."""
    fakes = serving(10)
    results = fakes.run_batch(*(image(n) for n in range(10)))
    assert all(result.count is not None and result.count.counted for result in results)
    assert results[-1].count is not None and results[-1].count.completed  # its last image: the request is done
    assert len(fakes.processed.objects) == 10 and len(fakes.ledger.counted) == 10
    assert (fakes.catalog.image_writes, fakes.ledger.calls) == (1, 1)
    assert (fakes.reuse.lookups, fakes.reuse.writes) == (1, 1)  # by content: tests/unit/test_reuse.py


def test_each_record_gets_its_own_result_and_a_transient_failure_stays_with_its_record() -> None:
    """GIVEN a batch where one source times out and one is missing WHEN it runs THEN the timed-out record alone
    is to be retried, the missing one fails for good (a result for its record), the rest are counted."""
    fakes = serving(4)
    transient = image(1, name="flaky")
    fetch = fakes.fetcher.fetch

    def fetching(url: str, *args: Any, **kwargs: Any) -> Any:
        if url == transient.url:
            raise FetchError(TIMEOUT, "the source did not answer in time", permanent=False)
        return fetch(url, *args, **kwargs)

    fakes.fetcher.fetch = fetching  # type: ignore[method-assign]
    results = fakes.run_batch(image(0), transient, image(2), image(3), image(4, name="missing"))
    assert isinstance(results[1].error, RetryLater)
    assert all(result.count is not None and result.count.counted for n, result in enumerate(results) if n != 1)
    states = {key[1]: outcome.status for key, outcome in fakes.catalog.images.items()}
    assert states == {
        2: ImageStatus.SUCCEEDED,
        4: ImageStatus.SUCCEEDED,
        5: ImageStatus.SUCCEEDED,
        6: ImageStatus.FAILED,
    }
    assert set(fakes.ledger.counted) == {(REQUEST, row, 0) for row in (2, 4, 5, 6)}


def test_the_same_image_twice_in_a_batch_is_processed_and_counted_once() -> None:
    """GIVEN a batch holding the same image twice (a duplicate delivery) WHEN it runs THEN it is fetched,
    compressed and stored once, counted once: the first record counted, the second a duplicate."""
    fakes = serving(1)
    first, again = fakes.run_batch(image(0), Delivery("again", image(0).to_message(), 1))
    assert first.count is not None and first.count.counted
    assert again.count == DUPLICATE
    assert fakes.fetcher.requests == [image(0).url] and len(fakes.ledger.counted) == 1


def test_a_duplicate_on_its_last_delivery_gives_the_image_the_last_deliverys_rules() -> None:
    """GIVEN the same image twice in a batch, one copy on its last delivery, its source failing transiently WHEN
    the batch runs THEN the image fails with its reason (not retried into the dead-letter queue) and counts once."""
    fakes = serving(0)
    fakes.open_request(REQUEST, total=1)
    fakes.fetcher.fetch = lambda url, *a, **k: (_ for _ in ()).throw(FetchError(TIMEOUT, "slow", permanent=False))  # type: ignore[method-assign]
    early, last = fakes.run_batch(
        Delivery("early", image(0).to_message(), 1), Delivery("last", image(0).to_message(), 5)
    )
    assert early.count is not None and early.count.counted and last.count == DUPLICATE
    [failed] = fakes.catalog.images.values()
    assert failed.error_code == TIMEOUT and "gave up after 5 attempts" in (failed.error_message or "")


def test_poison_records_are_removed_alone_and_the_rest_of_the_batch_goes_on() -> None:
    """GIVEN a batch with a malformed body, a chunk and an image of a request that does not exist beside a good
    image WHEN it runs THEN those three are removed (each with its reason: a chunk here is malformed, as any body
    that is not an image task) and the good one is counted."""
    fakes = serving(1)
    from ips.shared.csv_input import Chunk, Columns

    chunk = ChunkTask(REQUEST, "k", Columns(0, 1, 2, 3, True), Chunk(0, 10, 2, 1, 1), "salt")
    stranger = ImageTask("no-such-request", 2, 0, f"{BASE}/0.png", "salt")
    results = fakes.run_batch(Delivery("bad", "{not json", 1), chunk, stranger, image(0))  # type: ignore[arg-type]
    assert [result.removed for result in results] == [
        Removed.MALFORMED,
        Removed.MALFORMED,
        Removed.UNKNOWN_REQUEST,
        None,
    ]
    assert "body" in results[0].problem or results[0].problem
    assert results[1].problem == "a chunk, not an image task"
    assert results[3].count is not None and results[3].count.counted


def test_a_request_looked_up_once_is_not_looked_up_again_by_the_containers_next_batch() -> None:
    """GIVEN a container that processed a batch of a request WHEN its next batch holds the same request THEN the
    catalog is not asked for it again (a request never stops existing while it has image messages)."""
    fakes = serving(2)
    asked: list[str] = []
    get = fakes.catalog.get
    fakes.catalog.get = lambda request_id: asked.append(request_id) or get(request_id)  # type: ignore[method-assign]
    fakes.run_batch(image(0))
    fakes.run_batch(image(1))
    assert asked == [REQUEST]


def test_a_request_that_cannot_be_looked_up_has_its_records_retried_not_removed() -> None:
    fakes = serving(1)
    fakes.catalog.get = lambda request_id: (_ for _ in ()).throw(ConnectionError("MongoDB unreachable"))  # type: ignore[method-assign]
    [result] = fakes.run_batch(image(0))
    assert isinstance(result.error, ConnectionError) and result.removed is None and fakes.ledger.counted == {}


def test_a_failed_put_fails_its_own_record_and_the_others_are_settled() -> None:
    fakes = serving(3)
    fakes.processed = FailingOnce(fakes.processed, "put", ConnectionError("S3 refused"))  # type: ignore[assignment]
    results = fakes.run_batch(*(image(n) for n in range(3)))
    assert [result.error is not None for result in results].count(True) == 1
    assert len(fakes.ledger.counted) == 2
    fakes.run_batch(*(image(n) for n in range(3)))  # the redelivery of the failed one (and duplicates)
    assert len(fakes.ledger.counted) == 3 and fakes.ledger.counters[REQUEST].done == 3


@pytest.mark.parametrize(
    ("port", "method"),
    [("catalog", "record_images"), ("ledger", "count_many")],
    ids=["crash-after-the-catalog-write", "crash-after-the-count"],
)
def test_a_crash_after_a_step_fails_the_batch_and_its_redelivery_counts_each_image_exactly_once(
    port: str, method: str
) -> None:
    """GIVEN a batch whose catalog write (or count) went through and then crashed WHEN the batch is redelivered
    THEN every image is counted exactly once: none lost (the crash after the write), none twice (after the count)."""
    fakes = serving(4)
    setattr(fakes, port, FailingOnce(getattr(fakes, port), method, RuntimeError("crashed"), after=True))
    first = fakes.run_batch(*(image(n) for n in range(4)))
    assert all(isinstance(result.error, RuntimeError) for result in first)
    again = fakes.run_batch(*(image(n) for n in range(4)))
    assert all(result.error is None for result in again)
    counts = fakes.ledger.counters[REQUEST]
    assert (counts.done, len(fakes.ledger.counted)) == (4, 4)
    assert [result.count.counted for result in again if result.count] == [port == "catalog"] * 4


def test_no_more_than_store_in_flight_outputs_wait_for_their_puts() -> None:
    store = CountingStore()
    fakes = serving(8, processed=store)
    results: list[Any] = []
    running = threading.Thread(target=lambda: results.extend(fakes.run_batch(*(image(n) for n in range(8)))))
    running.start()
    _wait_for(lambda: store.in_progress == STORE_IN_FLIGHT)
    store.release.set()
    running.join(30)
    assert store.most_at_once == STORE_IN_FLIGHT
    assert len(fakes.ledger.counted) == 8 and len(store.objects) == 8


def _wait_for(condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    pytest.fail("the condition was never reached")
