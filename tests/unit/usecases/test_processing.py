"""Processing's rules over the fakes (ProcessingFakes), GIVEN/WHEN/THEN, across batches: each image counted once
whatever the deliveries, and the request completed by its last count once; a batch with a failure settles the
rest and its redelivery does only what is left; a settle that fails leaves every record to be retried.

Beside these: tests/unit/test_processing.py (one image's terminal states and retries), test_image_batch.py (one
batch's I/O, duplicates in a batch, poison records, failed puts, crashes between steps), test_reuse.py, and
test_encode_budget.py (the encode's caps and the quota charged for heavy images)."""

from __future__ import annotations

import io

from PIL import Image

from ips.processing.fakes import MemoryFetcher, ProcessingFakes
from ips.shared.fakes import MemoryBlobStore
from ips.shared.model import ImageStatus, ImageTask
from tests.unit.usecases.given import Refusing

REQUEST = "req-1"


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (shade, 90, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def image(number: int) -> ImageTask:
    return ImageTask(REQUEST, 2 + number, 0, f"http://images.invalid/{number}.png", "salt", "tenant-a")


def serving(*numbers: int, total: int) -> ProcessingFakes:
    """A request of `total` images, whose sources serve the images `numbers` (the others answer 404)."""
    fakes = ProcessingFakes(fetcher=MemoryFetcher({image(n).url: png(40 * n) for n in numbers}))
    fakes.open_request(REQUEST, total)
    return fakes


def test_duplicate_deliveries_across_batches_count_each_image_once_and_complete_the_request_once() -> None:
    # given: a request of two images
    fakes = serving(0, 1, total=2)
    # when: the first image is delivered in two batches, then both together, then both again
    batches = [fakes.run_batch(image(0)), fakes.run_batch(image(0)), fakes.run_batch(image(0), image(1))]
    batches.append(fakes.run_batch(image(0), image(1)))
    # then: two counts in all, and exactly one of them completed the request
    counts = [handled.count for batch in batches for handled in batch]
    assert all(count is not None for count in counts)
    assert sum(count.counted for count in counts if count) == 2
    assert sum(count.completed for count in counts if count) == 1
    ledger = fakes.ledger.counts(REQUEST)
    assert ledger is not None and (ledger.succeeded, ledger.failed, ledger.complete) == (2, 0, True)


def test_a_batch_with_a_failed_image_counts_the_failure_with_its_reason_beside_the_successes() -> None:
    # given: a request of three images, the second's source answering 404
    fakes = serving(0, 2, total=3)
    # when
    handled = fakes.run_batch(image(0), image(1), image(2))
    # then: every record is counted, the failure with its code; the request is complete
    assert [h.count.counted for h in handled if h.count] == [True, True, True]
    failed = fakes.catalog.images[(REQUEST, 3, 0)]
    assert failed.status is ImageStatus.FAILED and failed.error_code == "HTTP_STATUS"
    ledger = fakes.ledger.counts(REQUEST)
    assert ledger is not None and (ledger.succeeded, ledger.failed, ledger.complete) == (2, 1, True)


def test_a_batch_whose_settle_fails_leaves_every_record_to_be_retried_and_its_redelivery_counts_once() -> None:
    # given: a request of two images, and the ledger failing its count
    fakes = serving(0, 1, total=2)
    ledger = Refusing(fakes.ledger, "count_many")
    fakes.ledger = ledger  # type: ignore[assignment]
    # when: the batch runs, then runs again once the ledger answers
    failed = fakes.run_batch(image(0), image(1))
    ledger.down = False
    again = fakes.run_batch(image(0), image(1))
    # then: the first run reports each record's error (none counted); the redelivery counts each once
    assert all(h.error is not None and h.count is None for h in failed)
    assert [h.count.counted for h in again if h.count] == [True, True]
    counts = fakes.ledger.counts(REQUEST)
    assert counts is not None and (counts.succeeded, counts.complete) == (2, True)


class RefusingOnePut(MemoryBlobStore):
    """The processed bucket, refusing the first put of one key (S3 failing once)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.refused_key: str | None = key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if key == self.refused_key:
            self.refused_key = None
            raise ConnectionError("S3 refused the put")
        super().put(key, data, content_type)


def test_a_redelivery_after_a_partial_batch_failure_does_only_what_is_left() -> None:
    # given: a batch of two images whose second put fails once
    fakes = serving(0, 1, total=2)
    fakes.processed = RefusingOnePut(image(1).output_key)
    first = fakes.run_batch(image(0), image(1))
    # when: both records are delivered again (the handler reported only the second as failed; SQS may repeat both)
    again = fakes.run_batch(image(0), image(1))
    # then: the first was counted by the first batch, the second only by the redelivery, each once
    assert first[0].count is not None and first[0].count.counted
    assert isinstance(first[1].error, ConnectionError) and first[1].count is None
    assert again[0].count is not None and not again[0].count.counted
    assert again[1].count is not None and again[1].count.counted and again[1].count.completed
    counts = fakes.ledger.counts(REQUEST)
    assert counts is not None and (counts.succeeded, counts.failed, counts.complete) == (2, 0, True)
