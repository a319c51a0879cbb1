from __future__ import annotations

import csv
import io

from ips.completion.csv_output import OutputRow, render_output_csv


def read(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_rows_keep_order_and_failed_images_leave_an_empty_slot() -> None:
    data = render_output_csv(
        [
            OutputRow(
                "1",
                "SKU1",
                ["https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg"],
                ["https://o/1.jpg", None, "https://o/3.jpg"],
            ),
            OutputRow("2", "SKU2", ["https://a/4.jpg"], ["https://o/4.jpg"]),
        ]
    )
    assert read(data) == [
        ["S. No.", "Product Name", "Input Image Urls", "Output Image Urls"],
        ["1", "SKU1", "https://a/1.jpg,https://a/2.jpg,https://a/3.jpg", "https://o/1.jpg,,https://o/3.jpg"],
        ["2", "SKU2", "https://a/4.jpg", "https://o/4.jpg"],
    ]


def test_formula_cells_are_neutralised() -> None:
    data = render_output_csv(
        [
            OutputRow("=1+1", "@SUM(A1)", ["https://a/1.jpg"], [None]),
            OutputRow("-2", "+cmd|' /C calc'!A0", ["https://a/2.jpg"], [None]),
        ]
    )
    rows = read(data)[1:]
    assert rows[0][:2] == ["'=1+1", "'@SUM(A1)"]
    assert rows[1][:2] == ["'-2", "'+cmd|' /C calc'!A0"]


def test_cells_with_commas_quotes_and_newlines_round_trip() -> None:
    name = 'Mug, "large"\nblue'
    [row] = read(render_output_csv([OutputRow("1", name, ["https://a/1.jpg"], ["https://o/1.jpg"])]))[1:]
    assert row[1] == name
