"""Hostile CSVs, generated: the parser never crashes, and always answers valid products or row/column errors."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ips.completion.csv_output import OutputRow, render_output_csv
from ips.shared.csv_input import CsvLimits, byte_lines, parse_products_csv, plan_csv, read_chunk
from ips.shared.errors import InvalidInput

LIMITS = CsvLimits(max_bytes=200_000, max_rows=50, max_urls_per_row=5, max_problems=20)
HEADERS = ["S. No.", "Product Name", "Input Image Urls", "s no", "PRODUCT NAME", "input image urls", "Price", ""]
NASTY = ['"', "\n", "\r", ",", "\x00", "=", "+", "-", "@", "\ufeff", "\t", "'", "é", "😀", "\\", " "]

urls = st.one_of(
    st.builds(
        lambda host, path: f"https://{host}.example/{path}.jpg",
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        st.from_regex(r"[a-z0-9]{0,12}", fullmatch=True),
    ),
    st.sampled_from(
        [
            "ftp://x/1.jpg",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "http://",
            "https:///x",
            "http://[::1",
            "http://a b/c.jpg",
            "gopher://127.0.0.1:70/",
        ]
    ),
)
cells = st.one_of(
    st.text(alphabet=st.sampled_from(NASTY + list("abcXYZ0123")), max_size=12),
    st.lists(urls, min_size=0, max_size=6).map(",".join),
    st.integers(min_value=-5, max_value=60).map(str),
    st.text(min_size=300, max_size=400),  # over the field length cap
)
rows = st.lists(st.lists(cells, min_size=0, max_size=7), min_size=0, max_size=25)
headers = st.one_of(
    st.just(["S. No.", "Product Name", "Input Image Urls"]),
    st.lists(st.sampled_from(HEADERS), min_size=0, max_size=5),
    st.permutations(["S. No.", "Product Name", "Input Image Urls", "Price"]).map(list),
)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])


def render(header: list[str], body: list[list[str]], quoting: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting)
    writer.writerow(header)
    writer.writerows(body)
    return buffer.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers,
    rows,
    encodings,
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    st.binary(max_size=20),
)
def test_any_csv_is_either_valid_products_or_located_errors(header, body, encoding, quoting, junk) -> None:
    text = render(header, body, quoting)
    try:
        data = text.encode(encoding, errors="replace") + junk
    except UnicodeEncodeError:
        data = text.encode("utf-8") + junk
    try:
        products = parse_products_csv(data, LIMITS)
    except InvalidInput as refused:
        assert refused.code == "CSV_INVALID"
        assert 1 <= len(refused.problems) <= LIMITS.max_problems
        for problem in refused.problems:
            assert problem.code.isupper() and problem.message
            assert problem.row is None or problem.row >= 1
            assert problem.column in (None, "S. No.", "Product Name", "Input Image Urls")
        streamed_codes = _streamed_problem_codes(data)
        assert streamed_codes == [problem.code for problem in refused.problems]
        return
    assert 1 <= len(products) <= LIMITS.max_rows
    assert len({product.serial_number for product in products}) == len(products)
    for product in products:
        assert product.serial_number and product.product_name
        assert 1 <= len(product.image_urls) <= LIMITS.max_urls_per_row
        assert all(url.startswith(("http://", "https://")) for url in product.image_urls)
    # The streamed plan, read back chunk by chunk, gives exactly the same products.
    plan = plan_csv(byte_lines([data[i : i + 13] for i in range(0, len(data), 13)]), LIMITS, chunk_images=3)
    read_back = [
        p for chunk in plan.chunks for p in read_chunk(data[chunk.start : chunk.end], chunk, plan.columns, LIMITS)
    ]
    assert read_back == products


def _streamed_problem_codes(data: bytes) -> list[str]:
    try:
        plan_csv(byte_lines([data]), LIMITS)
    except InvalidInput as refused:
        return [problem.code for problem in refused.problems]
    raise AssertionError("the streamed validation accepted what the in-memory one refused")


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), min_size=1, max_size=10))
def test_output_cells_never_start_a_formula(rows) -> None:
    data = render_output_csv([OutputRow(serial, name, ["https://a/1.jpg"], [None]) for serial, name in rows])
    for record in list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))[1:]:
        for cell in record:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


@settings(max_examples=500)
@given(
    st.one_of(
        st.from_regex(r"(?i:https?)://[A-Za-z0-9.-]{0,12}(:[0-9]{0,6})?([/?#][ -~]{0,20})?", fullmatch=True),
        st.text(max_size=40).map(lambda tail: "http://" + tail),
    )
)
def test_the_fast_url_check_agrees_with_the_full_one(url: str) -> None:
    from ips.shared.csv_input import full_url_problem, url_problem

    assert (url_problem(url) is None) == (full_url_problem(url) is None)
