"""ips.processing.settle over in-memory ports: the one place an image's outcome is recorded and counted, for the process
function's batches and the reconciler alike. The count follows what the catalog keeps (its first terminal
state, with that image's savings), each image counts once, and an image its request does not have is named."""

from __future__ import annotations

from ips.processing.settle import DUPLICATE, settle
from ips.reconcile.fakes import ReconcileFakes
from ips.reconcile.service import DEAD_LETTERED, reconcile
from ips.shared.csv_input import ProductRow
from ips.shared.model import ImageOutcome, ImageStatus, ImageTask, Savings

REQUEST = "req-1"
URLS = ("http://images.invalid/a.jpg", "http://images.invalid/b.jpg")
DONE = ImageOutcome(ImageStatus.SUCCEEDED, output_url="http://assets.invalid/a", input_bytes=900, output_bytes=300)


def world() -> ReconcileFakes:
    fakes = ReconcileFakes()
    fakes.open_request(REQUEST, total=len(URLS))
    fakes.catalog.add_products(REQUEST, [ProductRow(2, "1", "Mug", URLS)])
    return fakes


def task(index: int, row: int = 2) -> ImageTask:
    return ImageTask(REQUEST, row, index, URLS[index % 2], "salt", "tenant-a")


def test_images_are_recorded_then_counted_with_their_savings_in_one_write_and_one_count() -> None:
    """GIVEN two images' outcomes WHEN they are settled THEN both are recorded and counted, the succeeded one's
    bytes summed, in one catalog write and one ledger call; the request is complete."""
    fakes = world()
    results = settle(
        [(task(0), DONE), (task(1), ImageOutcome.failure("HTTP_STATUS", "404"))], fakes.catalog, fakes.ledger, fakes.now
    )
    assert [result.counted for result in results] == [True, True]  # type: ignore[union-attr]
    assert results[1].completed  # type: ignore[union-attr]
    counts = fakes.ledger.counters[REQUEST]
    assert (counts.succeeded, counts.failed, counts.savings) == (1, 1, Savings(900, 300, 0))
    assert (fakes.catalog.image_writes, fakes.ledger.calls) == (1, 1)


def test_the_count_follows_the_first_terminal_state_with_its_savings() -> None:
    """GIVEN an image recorded SUCCEEDED whose count was lost (a crash between the two steps) WHEN it is settled
    again as failed (the reconciler, a late delivery) THEN the catalog keeps SUCCEEDED and the count follows it,
    savings included."""
    fakes = world()
    fakes.catalog.record_images([(task(0), DONE)])
    [result] = settle([(task(0), ImageOutcome.failure(DEAD_LETTERED, "gone"))], fakes.catalog, fakes.ledger, fakes.now)
    assert result.counted  # type: ignore[union-attr]
    assert fakes.catalog.images[(REQUEST, 2, 0)] == DONE
    assert fakes.ledger.counted[(REQUEST, 2, 0)] == Savings(900, 300, 0)


def test_the_same_image_twice_counts_once_and_an_unknown_image_is_named() -> None:
    fakes = world()
    first, again, unknown = settle(
        [(task(0), DONE), (task(0), DONE), (task(0, row=9), DONE)], fakes.catalog, fakes.ledger, fakes.now
    )
    assert first.counted and again == DUPLICATE  # type: ignore[union-attr]
    assert isinstance(unknown, LookupError) and list(fakes.ledger.counted) == [(REQUEST, 2, 0)]


def test_the_reconciler_counts_a_dead_lettered_image_that_had_succeeded_with_its_savings() -> None:
    """GIVEN an image recorded SUCCEEDED but never counted, whose message then died in the dead-letter queue
    WHEN the reconciler drains it THEN it is counted as the catalog has it: succeeded, with its bytes (the
    reconciler used to count it with no savings, so the request's bytes in and out came up short)."""
    fakes = world()
    fakes.catalog.record_images([(task(0), DONE)])
    fakes.dead_images.put(task(0).to_message())
    report = reconcile(fakes.reconcile())
    assert report.dead_images == 1 and fakes.dead_images.deleted
    counts = fakes.ledger.counters[REQUEST]
    assert (counts.succeeded, counts.failed, counts.savings) == (1, 0, Savings(900, 300, 0))
