from __future__ import annotations

import pytest

from ips.shared.csv_input import CsvLimits, ProductRow, byte_lines, parse_products_csv, plan_csv, read_chunk
from ips.shared.errors import InvalidInput

HEADER = "S. No.,Product Name,Input Image Urls\n"


DEFAULT_LIMITS = CsvLimits()


def problems(data: bytes, limits: CsvLimits = DEFAULT_LIMITS) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(InvalidInput) as refused:
        parse_products_csv(data, limits)
    assert refused.value.code == "CSV_INVALID"
    return [(problem.row, problem.column, problem.code) for problem in refused.value.problems]


def test_quoted_url_lists_are_split_in_order() -> None:
    data = HEADER + '1,SKU1,"https://a.example/1.jpg, https://a.example/2.jpg"\n2,SKU2,http://b.example/x.png\n'
    assert parse_products_csv(data.encode()) == [
        ProductRow(2, "1", "SKU1", ("https://a.example/1.jpg", "https://a.example/2.jpg")),
        ProductRow(3, "2", "SKU2", ("http://b.example/x.png",)),
    ]


def test_unquoted_extra_fields_are_more_urls_of_the_same_product() -> None:
    data = HEADER + "1,SKU1,https://a.example/1.jpg,https://a.example/2.jpg,https://a.example/3.jpg\n"
    [product] = parse_products_csv(data.encode())
    assert product.image_urls == (
        "https://a.example/1.jpg",
        "https://a.example/2.jpg",
        "https://a.example/3.jpg",
    )


def test_headers_match_ignoring_case_spaces_dots_and_a_bom() -> None:
    data = "\ufeffs no,PRODUCTNAME , input image  urls\n7,Lamp,https://a.example/l.jpg\n".encode()
    [product] = parse_products_csv(data)
    assert (product.serial_number, product.product_name) == ("7", "Lamp")


def test_columns_in_another_order_and_unknown_columns_are_fine() -> None:
    data = "Input Image Urls,Price,Product Name,S. No.\nhttps://a.example/1.jpg,9.99,Mug,3\n"
    [product] = parse_products_csv(data.encode())
    assert product == ProductRow(2, "3", "Mug", ("https://a.example/1.jpg",))


def test_blank_lines_are_skipped_and_rows_keep_their_spreadsheet_numbers() -> None:
    data = HEADER + "\n1,A,https://a.example/1.jpg\n,,\n2,B,https://a.example/2.jpg\n"
    assert [product.row for product in parse_products_csv(data.encode())] == [3, 5]


def test_every_problem_is_listed_with_row_and_column() -> None:
    data = (
        HEADER
        + "1,Good,https://a.example/1.jpg\n"
        + "1,Dup,https://a.example/2.jpg\n"
        + "2,,https://a.example/3.jpg\n"
        + "3,NoUrls,\n"
        + "4,BadScheme,ftp://a.example/4.jpg\n"
        + ",NoSerial,javascript:alert(1)\n"
    )
    assert problems(data.encode()) == [
        (3, "S. No.", "DUPLICATE_SERIAL"),
        (4, "Product Name", "EMPTY_PRODUCT_NAME"),
        (5, "Input Image Urls", "NO_URLS"),
        (6, "Input Image Urls", "INVALID_URL"),
        (7, "S. No.", "EMPTY_SERIAL"),
        (7, "Input Image Urls", "INVALID_URL"),
    ]


def test_missing_headers_are_named() -> None:
    assert problems(b"Serial,Name,Urls\n1,A,https://a.example/1.jpg\n") == [
        (1, "S. No.", "MISSING_COLUMN"),
        (1, "Product Name", "MISSING_COLUMN"),
        (1, "Input Image Urls", "MISSING_COLUMN"),
    ]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "EMPTY_FILE"),
        (b"  \n\n", "EMPTY_FILE"),
        (HEADER.encode(), "NO_PRODUCTS"),
        ((HEADER + "1,Caf\xe9,https://a.example/1.jpg\n").encode("latin-1"), "ENCODING"),
        ((HEADER + "1,A\x00,https://a.example/1.jpg\n").encode(), "NUL_BYTE"),
    ],
)
def test_file_level_problems(data: bytes, code: str) -> None:
    assert code in [found for _, _, found in problems(data)]


def test_encoding_problem_names_the_row() -> None:
    data = (HEADER + "1,A,https://a.example/1.jpg\n2,Caf\xe9,https://a.example/2.jpg\n").encode("latin-1")
    assert problems(data) == [(3, None, "ENCODING")]


def test_limits_on_rows_urls_and_bytes() -> None:
    limits = CsvLimits(max_rows=2, max_urls_per_row=2, max_bytes=10_000)
    many_rows = HEADER + "".join(f"{n},P{n},https://a.example/{n}.jpg\n" for n in range(1, 5))
    assert (4, None, "TOO_MANY_ROWS") in problems(many_rows.encode(), limits)
    many_urls = HEADER + '1,P,"https://a.example/1.jpg,https://a.example/2.jpg,https://a.example/3.jpg"\n'
    assert problems(many_urls.encode(), limits) == [(2, "Input Image Urls", "TOO_MANY_URLS")]
    assert problems(b"x" * 10_001, limits) == [(None, None, "FILE_TOO_LARGE")]


def test_problem_list_is_capped_and_says_so() -> None:
    data = HEADER + "".join(f"{n},,https://a.example/{n}.jpg\n" for n in range(1, 30))
    with pytest.raises(InvalidInput) as refused:
        parse_products_csv(data.encode(), CsvLimits(max_problems=5))
    assert len(refused.value.problems) == 5
    assert refused.value.omitted == 24  # every problem counted: 29 rows without a product name, 5 listed


def test_extra_fields_are_refused_when_the_url_column_is_not_last() -> None:
    data = "S. No.,Input Image Urls,Product Name\n1,https://a.example/1.jpg,Mug,https://a.example/2.jpg\n"
    assert problems(data.encode()) == [(2, None, "EXTRA_FIELDS")]


def test_multiline_quoted_cells_stay_one_row() -> None:
    data = HEADER + '1,"Two\nLines","https://a.example/1.jpg\nhttps://a.example/2.jpg"\n2,B,https://a.example/3.jpg\n'
    products = parse_products_csv(data.encode())
    assert [(product.row, len(product.image_urls)) for product in products] == [(2, 2), (3, 1)]


def test_a_streamed_plan_cuts_byte_ranges_that_read_back_to_the_same_products() -> None:
    rows = [
        f'{n},"Name {n}{chr(10) + "second line" if n % 7 == 0 else ""}",https://a.example/{n}.jpg'
        + (f",https://a.example/{n}b.jpg" if n % 3 == 0 else "")
        + ("\n\n" if n % 11 == 0 else "\n")
        for n in range(1, 2501)
    ]
    data = ("\ufeff" + HEADER + "".join(rows)).encode()
    expected = parse_products_csv(data, CsvLimits(max_rows=5000))
    # Fed in awkward 7-byte pieces, as a network stream would arrive.
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    plan = plan_csv(byte_lines(pieces), CsvLimits(max_rows=5000), chunk_images=1000)
    # 2,500 rows, every third with two images (3,333 images): chunks of at most 1,000 images, each full but for
    # the last (the next row would not have fitted), whatever the rows.
    assert [chunk.images for chunk in plan.chunks] == [1000, 1000, 1000, 333]
    assert [chunk.products for chunk in plan.chunks] == [750, 750, 750, 250]
    assert plan.total_products == 2500
    assert plan.total_images == sum(len(product.image_urls) for product in expected)
    assert plan.chunks[-1].end == len(data)
    read_back = [
        product for chunk in plan.chunks for product in read_chunk(data[chunk.start : chunk.end], chunk, plan.columns)
    ]
    assert read_back == expected


def test_chunks_are_sized_by_images_and_a_row_with_more_is_a_chunk_of_its_own() -> None:
    counts = [3, 4, 50, 1, 1, 2, 6, 1]
    rows = (
        f'{n},P{n},"{",".join(f"https://a.example/{n}-{i}.jpg" for i in range(count))}"\n{chr(10) if n == 6 else ""}'
        for n, count in enumerate(counts, start=1)
    )
    data = (HEADER + "".join(rows)).encode()
    plan = plan_csv(byte_lines([data]), CsvLimits(), chunk_images=6)
    assert [(chunk.first_row, chunk.products, chunk.images) for chunk in plan.chunks] == [
        (2, 1, 3),  # 3 + 4 would pass 6
        (3, 1, 4),
        (4, 1, 50),  # more than the target on its own: alone, never split
        (5, 3, 4),  # 1 + 1 + 2, then 6 would pass it
        (8, 1, 6),  # from the blank row 8 after row 7: its product is row 9
        (10, 1, 1),
    ]
    read_back = [p for chunk in plan.chunks for p in read_chunk(data[chunk.start : chunk.end], chunk, plan.columns)]
    assert read_back == parse_products_csv(data)


def test_streamed_validation_reports_like_the_in_memory_one() -> None:
    data = (HEADER + "1,Mug,ftp://x/1.jpg\n1,Lamp,https://x/2.jpg\n").encode()
    with pytest.raises(InvalidInput) as refused:
        plan_csv(byte_lines([data]))
    assert [(p.row, p.code) for p in refused.value.problems] == [(2, "INVALID_URL"), (3, "DUPLICATE_SERIAL")]
    with pytest.raises(InvalidInput) as too_big:
        rows = [f"{n},Mug,https://a.example/{'x' * 300}.jpg\n".encode() for n in range(10)]
        plan_csv(byte_lines([HEADER.encode(), *rows]), CsvLimits(max_bytes=1000))
    assert [p.code for p in too_big.value.problems][-1] == "FILE_TOO_LARGE"  # reading stops at the cap
    with pytest.raises(InvalidInput) as empty:
        plan_csv(byte_lines([b"\n \n"]))
    assert [p.code for p in empty.value.problems] == ["EMPTY_FILE"]
