"""AWS's own payload limits under the API's advertised ones, through the local gateway (which enforces them as
API Gateway and Lambda do): a body API Gateway base64-encodes past Lambda's 6 MiB event is a 413 pointing to
the presigned route, not a 5xx; a status page stops adding products before its JSON passes Lambda's 6 MiB
response, and goes on with `nextCursor`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from infra.topology import TOPOLOGY
from ips.shared.csv_input import CsvLimits, ProductRow
from ips_runtime.adapters import Adapters
from ips_runtime.roots import reset_roots
from localcloud.gateway import Gateway, api_event, match_route
from localcloud.settings import ApiKey
from tests.integration.conftest import API_KEY, Pipeline
from tests.integration.test_api_handlers import HEADER, multipart

LIMITS = TOPOLOGY.payload_limits


@pytest.fixture
def gateway(pipeline: Pipeline) -> Iterator[Gateway]:
    gateway = Gateway(TOPOLOGY, pipeline.functions, [ApiKey(API_KEY)], lambda key: None, lambda: {}, port=0)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def csv_of(size: int) -> bytes:
    """A valid CSV of about `size` bytes (long URLs, under 10,000 rows)."""
    rows, n = [HEADER.encode()], 0
    total = len(rows[0])
    while total < size:
        n += 1
        row = f"{n},Product {n},https://img.example/{'x' * 440}/{n}.jpg\n".encode()
        rows.append(row)
        total += len(row)
    return b"".join(rows)


def test_a_csv_at_the_direct_routes_cap_fits_lambdas_event_payload() -> None:
    body, headers = multipart(b"x" * CsvLimits().max_bytes)
    big_headers = {**headers, "x-api-key": API_KEY, "user-agent": "u" * 4000, "cookie": "c" * 4000}
    route, parameters = match_route(TOPOLOGY.routes, "POST", "/api/v1/upload")  # type: ignore[misc]
    event = api_event(
        route, "/api/v1/upload", "webhookUrl=" + "w" * 2000, parameters, big_headers, body,
        api_key=API_KEY, binary_media_types=TOPOLOGY.binary_media_types,
    )  # fmt: skip
    assert event["isBase64Encoded"]
    assert len(json.dumps(event)) <= LIMITS.invoke_request_bytes
    assert len(body) <= LIMITS.function_body_bytes


@pytest.mark.parametrize(
    ("size", "answered_by"),
    [
        (CsvLimits().max_bytes + 200_000, "the function"),  # over the route's cap: the handler's 413
        (4_900_000, "the gateway"),  # base64 in the event is over 6 MiB: Lambda is never invoked (was a 5xx)
        (LIMITS.gateway_body_bytes + 1, "the gateway"),  # over API Gateway's own 10 MiB
    ],
)
def test_a_csv_over_the_cap_is_413_with_the_way_to_the_presigned_route(
    gateway: Gateway, pipeline: Pipeline, size: int, answered_by: str
) -> None:
    answer = requests.post(
        f"{gateway.url}/api/v1/upload",
        data=csv_of(size),
        headers={"x-api-key": API_KEY, "content-type": "text/csv"},
        timeout=60,
    )
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert "POST /api/v1/uploads" in answer.json()["message"], answered_by
    assert pipeline.queued() == 0


def long_products(first_row: int, count: int, urls: int = 50) -> list[ProductRow]:
    # The page: 1,000 products of 50 URLs is about 7.7 MB of status JSON.
    def product(row: int) -> ProductRow:
        links = tuple(f"https://img.example/c/{row}/{'p' * 100}/{index}.jpg" for index in range(urls))
        return ProductRow(row, str(row), f"Product {row}", links)

    return [product(row) for row in range(first_row, first_row + count)]


def test_a_status_page_stops_before_lambdas_response_payload_and_goes_on_by_cursor(
    gateway: Gateway, pipeline: Pipeline, monkeypatch
) -> None:
    body, headers = multipart(HEADER + "1,First,https://img.example/1.jpg\n")
    _, accepted = pipeline.api("POST", "/api/v1/upload", body=body, headers=headers)
    request_id = accepted["requestId"]
    Adapters.from_env().catalog.add_products(request_id, long_products(3, 1000))

    def page(cursor: str | None = None) -> requests.Response:
        return requests.get(
            f"{gateway.url}/api/v1/status/{request_id}",
            params={"cursor": cursor} if cursor else {},
            headers={"x-api-key": API_KEY},
            timeout=60,
        )

    first = page()
    assert first.status_code == 200
    assert 0 < len(first.json()["products"]) < 1000  # the byte budget, not the count, ended the page
    assert first.json()["nextCursor"] is not None
    seen, answer = [], first
    while True:
        assert answer.status_code == 200 and len(answer.content) <= LIMITS.invoke_response_bytes
        seen += [int(product["serialNumber"]) for product in answer.json()["products"]]
        cursor = answer.json()["nextCursor"]
        if cursor is None:
            break
        answer = page(cursor)
    assert seen == list(range(3, 1003))  # (the uploaded row is not fanned out here: no worker ran)

    # Without the byte budget the same page is over Lambda's response payload: API Gateway answers 502.
    monkeypatch.setenv("STATUS_PAGE_MAX_BYTES", str(10**9))
    reset_roots()
    over = page()
    assert (over.status_code, over.json()) == (502, {"message": "Internal server error"})
