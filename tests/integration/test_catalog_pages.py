"""A request's products a page at a time, from a real MongoDB wire server (SecantusDB): the page is the rows
after the cursor's, in row order, whatever gaps the rows have, and reading it costs a page, not the request."""

from __future__ import annotations

import uuid
from typing import Any

from pymongo import MongoClient, monitoring

from ips.shared.csv_input import ProductRow
from ips_adapters.mongo import MongoCatalog


class _Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _catalog(mongo_uri: str, rows: list[int]) -> tuple[MongoCatalog, str, _Finds, Any]:
    finds = _Finds()
    database = MongoClient(mongo_uri, tz_aware=True, event_listeners=[finds])[f"ips_{uuid.uuid4().hex[:12]}"]
    catalog = MongoCatalog(database)
    catalog.ensure_indexes()
    request_id = str(uuid.uuid4())
    catalog.add_products(
        request_id, [ProductRow(row, str(row), f"P{row}", (f"http://i.invalid/{row}.jpg",)) for row in rows]
    )
    return catalog, request_id, finds, database


def _rows(catalog: MongoCatalog, request_id: str, after: int, limit: int | None) -> list[int]:
    return [product.row for product in catalog.products(request_id, after, limit)]


def test_pages_are_the_rows_after_the_cursor_whatever_the_gaps(mongo_uri: str) -> None:
    # Row 1 is the header; 7 a blank line; 20 to 29 a chunk not expanded yet; the last row is 40.
    rows = [row for row in range(2, 41) if row != 7 and not 20 <= row < 30]
    catalog, request_id, _, _ = _catalog(mongo_uri, rows)
    for after in (0, 1, 5, 6, 7, 15, 19, 25, 38, 40, 100):
        for limit in (1, 2, 3, 10, 50):
            assert _rows(catalog, request_id, after, limit) == [row for row in rows if row > after][:limit]
    assert _rows(catalog, request_id, 0, None) == rows
    assert _rows(catalog, str(uuid.uuid4()), 0, 5) == []  # another request's rows are never read


def test_a_page_reads_a_page_of_a_big_request(mongo_uri: str) -> None:
    # A status poll of a 100,000-product request must not read all of them: SecantusDB answers the sorted range
    # query by sorting every match, so the pollers of one big request took a core.
    rows = list(range(2, 602))
    catalog, request_id, finds, database = _catalog(mongo_uri, rows)
    finds.commands.clear()

    assert _rows(catalog, request_id, 300, 3) == [301, 302, 303]

    examined = []
    for command in finds.commands:
        query = {key: command[key] for key in ("filter", "sort", "limit") if key in command}
        plan = database.command("explain", {"find": "products", **query}, verbosity="executionStats")
        examined.append(plan["executionStats"]["totalDocsExamined"])
    assert examined and sum(examined) <= 4, examined
