"""A request's status (ips.status.service) over in-memory ports, and its JSON (ips_runtime.status_document): exact
counts from the counter while it runs, the final ones once it ended, pages by row, nothing for another tenant, and the
stored webhook and error mapped to the public (camelCase) contract."""

from __future__ import annotations

import json

from ips.processing.settle import settle
from ips.shared.csv_input import ProductRow
from ips.shared.model import Counts, ImageOutcome, ImageStatus, ImageTask, RequestStatus
from ips.shared.ports import RequestRecord
from ips.status.fakes import StatusFakes
from ips.status.service import decode_cursor, request_status
from ips_runtime.api import StatusResponse
from ips_runtime.status_document import PAGE_MAX_BYTES, status_document

OK = ImageOutcome(ImageStatus.SUCCEEDED, output_url="http://assets.invalid/x.jpg", input_bytes=10, output_bytes=4)


def a_request(world: StatusFakes, products: int = 3) -> str:
    request_id = "req-1"
    world.catalog.create(
        RequestRecord(request_id, "tenant-a", RequestStatus.PENDING, world.now, products, products, None)
    )
    world.catalog.add_products(
        request_id,
        [ProductRow(row, str(row), f"P{row}", (f"http://i.invalid/{row}.jpg",)) for row in range(2, 2 + products)],
    )
    world.ledger.open(request_id, products, world.now)
    return request_id


def count(world: StatusFakes, request_id: str, row: int, outcome: ImageOutcome) -> None:
    task = ImageTask(request_id, row, 0, f"http://i.invalid/{row}.jpg", "salt", "tenant-a")
    settle([(task, outcome)], world.catalog, world.ledger, world.now)


def test_a_running_request_reads_its_counts_from_the_counter_and_pages_by_row() -> None:
    world = StatusFakes()
    request_id = a_request(world)
    progress = request_status(request_id, "tenant-a", world.status(), limit=2)
    assert progress is not None and (progress.status, progress.succeeded) == (RequestStatus.PENDING, 0)
    count(world, request_id, 2, OK)
    progress = request_status(request_id, "tenant-a", world.status(), limit=2)
    assert progress is not None
    assert (progress.status, progress.succeeded, progress.failed) == (RequestStatus.PROCESSING, 1, 0)
    assert [p.row for p in progress.products] == [2, 3] and progress.more
    document = status_document(progress, PAGE_MAX_BYTES)
    StatusResponse.model_validate(document)  # the documented contract
    assert decode_cursor(document["nextCursor"]) == 3
    rest = request_status(request_id, "tenant-a", world.status(), limit=2, after_row=3)
    assert rest is not None and [p.row for p in rest.products] == [4] and not rest.more
    assert status_document(rest, PAGE_MAX_BYTES)["nextCursor"] is None


def test_another_tenants_request_or_an_unknown_one_is_not_found() -> None:
    world = StatusFakes()
    request_id = a_request(world)
    assert request_status(request_id, "tenant-b", world.status()) is None
    assert request_status("nope", "tenant-a", world.status()) is None


def test_an_ended_request_shows_its_final_counts_output_link_webhook_and_error_in_camel_case() -> None:
    world = StatusFakes()
    request_id = a_request(world, products=1)
    count(world, request_id, 2, OK)
    world.catalog.finalise(request_id, RequestStatus.COMPLETED, Counts(1, 1, 0), f"{request_id}/output.csv", world.now)
    world.catalog.record_webhook(request_id, {"delivered": True, "attempts": 2, "last_status": 204, "last_error": None})
    progress = request_status(request_id, "tenant-a", world.status())
    assert progress is not None
    document = status_document(progress, PAGE_MAX_BYTES)
    StatusResponse.model_validate(document)
    assert (document["status"], document["succeeded"], document["completedAt"]) == (
        "COMPLETED",
        1,
        "2026-12-01T00:00:00Z",
    )
    assert document["outputCsvUrl"] == f"http://uploads.invalid/{request_id}/output.csv?expires=900"
    assert document["webhook"] == {
        "delivered": True,
        "attempts": 2,
        "lastStatus": 204,
        "lastError": None,
        "nextAttemptAt": None,
        "gaveUp": False,
    }
    assert document["products"][0]["outputImageBytes"] == [4]
    assert "last_status" not in json.dumps(document)


def test_a_failed_requests_error_lists_its_problems() -> None:
    from ips.shared.errors import Problem

    world = StatusFakes()
    request_id = a_request(world, products=1)
    problems = [Problem(3, "Input Image Urls", "INVALID_URL", "URL 1: not a valid URL")]
    world.catalog.mark_failed(request_id, "CSV_INVALID", "The CSV file is invalid.", world.now, problems, omitted=7)
    progress = request_status(request_id, "tenant-a", world.status())
    assert progress is not None
    document = status_document(progress, PAGE_MAX_BYTES)
    StatusResponse.model_validate(document)
    assert document["error"] == {
        "code": "CSV_INVALID",
        "message": "The CSV file is invalid.",
        "errors": [
            {"row": 3, "column": "Input Image Urls", "code": "INVALID_URL", "message": "URL 1: not a valid URL"}
        ],
        "errorsOmitted": 7,
    }


def test_a_page_stops_before_its_byte_budget_and_goes_on_by_cursor() -> None:
    world = StatusFakes()
    request_id = a_request(world, products=50)
    progress = request_status(request_id, "tenant-a", world.status(), limit=50)
    assert progress is not None and not progress.more
    document = status_document(progress, 4_000)  # room for a few products only
    assert 0 < len(document["products"]) < 50 and document["nextCursor"]
    last = document["products"][-1]
    assert decode_cursor(document["nextCursor"]) == int(last["serialNumber"]) == 1 + len(document["products"])


def test_the_document_is_what_the_response_model_serialises_so_its_measure_is_the_answers_size() -> None:
    """The page budget measures this document; the route answers the model's serialisation of it. A field the
    document leaves out and the model fills in (a failed image's null details were 110 bytes each, unmeasured)
    made pages of failed images pass Lambda's response limit: API Gateway's 502."""
    from ips.shared.errors import Problem

    world = StatusFakes()
    request_id = a_request(world, products=3)
    count(world, request_id, 2, OK)
    count(world, request_id, 3, ImageOutcome.failure("HTTP_STATUS", "HTTP 404 from i.invalid"))
    world.catalog.mark_failed(
        request_id, "CSV_INVALID", "bad", world.now, [Problem(2, None, "NO_URLS", "No image URL.")]
    )
    world.catalog.record_webhook(request_id, {"delivered": False, "attempts": 5, "last_status": 500, "last_error": "x"})
    progress = request_status(request_id, "tenant-a", world.status())
    assert progress is not None
    document = status_document(progress, PAGE_MAX_BYTES)
    assert [product["images"][0] is None for product in document["products"]] == [False, False, True]
    assert StatusResponse.model_validate(document).model_dump(mode="json") == document


def test_free_text_from_elsewhere_is_cut_where_it_is_shown() -> None:
    """An image's error and the webhook's last error are stored as their source wrote them (a server's reason
    phrase may be 64 kB): the status shows at most MESSAGE_MAX_CHARS of each."""
    from ips.shared.errors import MESSAGE_MAX_CHARS

    world = StatusFakes()
    request_id = a_request(world, products=1)
    count(world, request_id, 2, ImageOutcome.failure("HTTP_STATUS", "HTTP 404 " + "r" * 70_000))
    world.catalog.record_webhook(request_id, {"delivered": False, "attempts": 1, "last_error": "e" * 70_000})
    progress = request_status(request_id, "tenant-a", world.status())
    assert progress is not None
    document = status_document(progress, PAGE_MAX_BYTES)
    [error] = document["products"][0]["errors"]
    assert len(error["message"]) == len(document["webhook"]["lastError"]) == MESSAGE_MAX_CHARS
    assert error["message"].startswith("HTTP 404 rrr") and error["message"].endswith("…")
