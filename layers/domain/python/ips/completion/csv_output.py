"""Render the output CSV: the input rows in order plus `Output Image Urls`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ips.shared.csv_input import NAME_COLUMN, SERIAL_COLUMN, URLS_COLUMN

OUTPUT_URLS_COLUMN = "Output Image Urls"
# Spreadsheet apps evaluate cells starting with these; prefixing a quote keeps them text (OWASP CSV injection).
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class OutputRow:
    serial_number: str
    product_name: str
    input_urls: Sequence[str]
    output_urls: Sequence[str | None]  # same length and order as input_urls; None where the image failed


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_TRIGGERS) else cell


def render_output_csv(rows: Iterable[OutputRow]) -> bytes:
    return b"".join(stream_output_csv(rows))


def stream_output_csv(rows: Iterable[OutputRow], piece_bytes: int = 1 << 16) -> Iterator[bytes]:
    """The output CSV in pieces of about `piece_bytes`: a million rows are never held at once."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([SERIAL_COLUMN, NAME_COLUMN, URLS_COLUMN, OUTPUT_URLS_COLUMN])
    for row in rows:
        writer.writerow(
            [
                neutralise(row.serial_number),
                neutralise(row.product_name),
                neutralise(",".join(row.input_urls)),
                neutralise(",".join(url or "" for url in row.output_urls)),
            ]
        )
        if buffer.tell() >= piece_bytes:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")
