"""Status's rules over the fakes (StatusFakes), GIVEN/WHEN/THEN, beside those tests/unit/test_status.py holds (counts
from the counter, another tenant's request, an ended request's document, pages by byte budget): the status a client
sees moves PENDING, PROCESSING, then final only once the output CSV exists; a page holds at most its limit, says
whether more follow, and goes on after its last row."""

from __future__ import annotations

from ips.completion.service import output_csv_key
from ips.shared.model import Counts, RequestStatus
from ips.status.fakes import StatusFakes
from ips.status.service import request_status
from tests.unit.test_status import OK, a_request, count


def test_a_request_reads_pending_until_its_first_count_then_processing_until_its_output_exists() -> None:
    # given: a request of three products, one image each
    world = StatusFakes()
    request_id = a_request(world, products=3)
    # when / then: nothing counted yet
    before = request_status(request_id, "tenant-a", world.status())
    assert before is not None and (before.status, before.succeeded, before.failed) == (RequestStatus.PENDING, 0, 0)
    # when / then: every image counted, but the completion step has not written the output CSV
    for row in (2, 3, 4):
        count(world, request_id, row, OK)
    counted = request_status(request_id, "tenant-a", world.status())
    assert counted is not None and (counted.status, counted.succeeded) == (RequestStatus.PROCESSING, 3)
    assert counted.output_csv_url is None
    # when / then: completed, its output CSV linked
    world.uploads.put(output_csv_key(request_id), b"csv", "text/csv")
    world.catalog.finalise(request_id, RequestStatus.COMPLETED, Counts(3, 3, 0), output_csv_key(request_id), world.now)
    ended = request_status(request_id, "tenant-a", world.status())
    assert ended is not None and ended.status is RequestStatus.COMPLETED and ended.output_csv_url is not None


def test_a_page_holds_at_most_its_limit_says_whether_more_follow_and_goes_on_after_its_last_row() -> None:
    # given: a request of four products (the last page is exactly full)
    world = StatusFakes()
    request_id = a_request(world, products=4)
    # when: pages of two, each after the last row of the one before
    pages, after = [], 0
    while True:
        page = request_status(request_id, "tenant-a", world.status(), limit=2, after_row=after)
        assert page is not None
        pages.append(([product.row for product in page.products], page.more))
        if not page.more:
            break
        after = page.products[-1].row
    # then: every product once, in row order; only the last page says no more follow
    assert pages == [([2, 3], True), ([4, 5], False)]
