"""Validate a products CSV as a stream: every problem collected with its row and column, up to a cap."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import NoReturn

from ips.shared.csv_input.lines import ByteLines, RecordText, byte_lines, overlong_field
from ips.shared.csv_input.model import (
    NAME_COLUMN,
    REQUIRED_COLUMNS,
    SERIAL_COLUMN,
    URLS_COLUMN,
    Chunk,
    Columns,
    CsvLimits,
    CsvPlan,
    Problems,
    ProductRow,
    csv_invalid,
    normalise_header,
)
from ips.shared.csv_input.urls import url_problem
from ips.shared.errors import QUOTED_CHARS, InvalidInput, Problem, shortened

_URL_SEPARATORS = re.compile(r"[,\s]+")
DEFAULT_LIMITS = CsvLimits()


class ProductReader:
    """Validates records as they stream in. Iterating yields each good product; at the end it raises
    InvalidInput listing every problem found, so act on the products only once iteration has finished."""

    def __init__(self, lines: Iterable[str], limits: CsvLimits, problems: Problems | None = None) -> None:
        self.limits = limits
        self.problems = problems or Problems(limits.max_problems)
        self._lines = RecordText(lines)
        self._reader = csv.reader(self._lines)
        self.columns = self._read_header()

    def _read_header(self) -> Columns:
        try:
            header = next(self._reader, None)
        except csv.Error as exc:
            self._refuse_record(1, None, exc)
        self._lines.record_done()
        if header is None or not any(cell.strip() for cell in header):
            self.problems.add(1, None, "MISSING_HEADER", _header_message())
        else:
            found = _locate_columns(header, self.problems)
        self.problems.raise_if_any()
        assert header is not None  # raise_if_any raised for a missing header
        serial, name, urls = (found[key] for key in REQUIRED_COLUMNS)
        urls_last = urls == max(found.values()) and all(not cell.strip() for cell in header[urls + 1 :])
        return Columns(serial, name, urls, len(header), urls_last)

    def __iter__(self) -> Iterator[ProductRow]:
        limits, problems, columns = self.limits, self.problems, self.columns
        first_row_of_serial: dict[str, int] = {}
        count = 0
        row = 1
        while True:
            row += 1
            try:
                record = next(self._reader, None)
            except csv.Error as exc:
                self._refuse_record(row, columns, exc)
            self._lines.record_done()
            if record is None:
                break
            if not any(cell.strip() for cell in record):
                continue
            count += 1
            if count > limits.max_rows:
                problems.add(row, None, "TOO_MANY_ROWS", f"More than {limits.max_rows} product rows.")
                break
            serial = record[columns.serial].strip() if columns.serial < len(record) else ""
            previous = first_row_of_serial.setdefault(serial, row) if serial else row
            if previous != row:
                problems.add(
                    row,
                    SERIAL_COLUMN,
                    "DUPLICATE_SERIAL",
                    f"Serial number {shortened(serial, QUOTED_CHARS)!r} already used in row {previous}.",
                )
            product = _validate_row(row, record, columns, limits, problems)
            if product is not None and previous == row:
                yield product
        if count == 0 and not problems.items:
            problems.add(None, None, "NO_PRODUCTS", "The file has a header but no product rows.")
        problems.raise_if_any()

    def _refuse_record(self, row: int, columns: Columns | None, exc: csv.Error) -> NoReturn:
        """The csv module cannot read this record (a field over its 131,072-character limit): a problem with
        the row and column, and validation stops (where the record ends is then unknown)."""
        index = overlong_field(self._lines.record, csv.field_size_limit())
        if index is None:
            self.problems.add(row, None, "CSV_SYNTAX", f"The record cannot be read as CSV: {exc}.")
        else:
            label = columns.label(index) if columns is not None else f"column {index + 1}"
            self.problems.add(
                row, label, "FIELD_TOO_LONG", f"Over {csv.field_size_limit()} characters; the file is read no further."
            )
        raise csv_invalid(self.problems.items, omitted=self.problems.omitted) from None


def _open_reader(raw_lines: Iterable[bytes], limits: CsvLimits) -> tuple[ProductReader, ByteLines]:
    problems = Problems(limits.max_problems)
    lines = ByteLines(raw_lines, limits, problems)
    try:
        return ProductReader(lines, limits, problems), lines
    except InvalidInput:
        if not lines.saw_text and not any(problem.code == "FILE_TOO_LARGE" for problem in problems.items):
            raise csv_invalid([Problem(None, None, "EMPTY_FILE", "The file is empty.")]) from None
        raise


def plan_csv(raw_lines: Iterable[bytes], limits: CsvLimits = DEFAULT_LIMITS, chunk_images: int = 1000) -> CsvPlan:
    """Validate a whole CSV in one streaming pass (never holding it) and cut it into chunks of at most
    `chunk_images` images (a product's images stay together: a row with more is a chunk of its own), as byte
    ranges, for the fan-out. Sized by images, not rows, so that expanding any chunk fits one invocation.
    Raises InvalidInput listing every problem."""
    reader, lines = _open_reader(raw_lines, limits)
    chunks: list[Chunk] = []
    start, first_row, products, images = lines.offset, 2, 0, 0
    # Where the last product's record ended, and its row: a new chunk starts right after it (blank rows between
    # belong to the new chunk, whose row numbers count them).
    end, last_row = lines.offset, 1
    for product in reader:
        if products and images + len(product.image_urls) > chunk_images:
            chunks.append(Chunk(start, end, first_row, products, images))
            start, first_row, products, images = end, last_row + 1, 0, 0
        products += 1
        images += len(product.image_urls)
        end, last_row = lines.offset, product.row
    if products:
        chunks.append(Chunk(start, lines.offset, first_row, products, images))
    return CsvPlan(reader.columns, chunks)


def parse_products_csv(data: bytes, limits: CsvLimits = DEFAULT_LIMITS) -> list[ProductRow]:
    """Validate a whole CSV held in memory; returns its products in file order or raises InvalidInput."""
    return list(_open_reader(byte_lines([data]), limits)[0])


def read_chunk(data: bytes, chunk: Chunk, columns: Columns, limits: CsvLimits = DEFAULT_LIMITS) -> list[ProductRow]:
    """The products of one chunk (already validated as part of the whole file)."""
    problems = Problems(limits.max_problems)
    products = []
    for row, record in enumerate(csv.reader(io.StringIO(data.decode("utf-8"), newline="")), start=chunk.first_row):
        if any(cell.strip() for cell in record):
            product = _validate_row(row, record, columns, limits, problems)
            if product is not None:
                products.append(product)
    problems.raise_if_any()
    return products


def _header_message() -> str:
    return f"The first row must be the header: {SERIAL_COLUMN},{NAME_COLUMN},{URLS_COLUMN}."


def _locate_columns(header: list[str], problems: Problems) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        key = normalise_header(name)
        if key in REQUIRED_COLUMNS:
            if key in columns:
                problems.add(
                    1, REQUIRED_COLUMNS[key], "DUPLICATE_COLUMN", f"Column {REQUIRED_COLUMNS[key]!r} appears twice."
                )
            columns.setdefault(key, index)
    for key, label in REQUIRED_COLUMNS.items():
        if key not in columns:
            problems.add(1, label, "MISSING_COLUMN", f"Missing column {label!r}. {_header_message()}")
    return columns


def _validate_row(
    row: int, record: list[str], columns: Columns, limits: CsvLimits, problems: Problems
) -> ProductRow | None:
    serial_index, name_index, urls_index = columns.serial, columns.name, columns.urls
    width, urls_last = columns.width, columns.urls_last
    before = problems.found

    def cell(index: int) -> str:
        return record[index].strip() if index < len(record) else ""

    serial, name = cell(serial_index), cell(name_index)
    if not serial:
        problems.add(row, SERIAL_COLUMN, "EMPTY_SERIAL", "Serial number is empty.")
    elif len(serial) > limits.max_field_length:
        problems.add(row, SERIAL_COLUMN, "FIELD_TOO_LONG", f"Over {limits.max_field_length} characters.")
    if not name:
        problems.add(row, NAME_COLUMN, "EMPTY_PRODUCT_NAME", "Product name is empty.")
    elif len(name) > limits.max_field_length:
        problems.add(row, NAME_COLUMN, "FIELD_TOO_LONG", f"Over {limits.max_field_length} characters.")

    url_cells = [cell(urls_index)]
    extra = [value for value in record[width:] if value.strip()]
    if extra and urls_last:
        # The common unquoted form: a row's extra fields are more URLs of the same product.
        url_cells.extend(value.strip() for value in extra)
    elif extra:
        problems.add(row, None, "EXTRA_FIELDS", f"{len(extra)} more field(s) than the header has; quote the URL list.")
    urls = [url for text in url_cells for url in _URL_SEPARATORS.split(text) if url]
    if not urls:
        problems.add(row, URLS_COLUMN, "NO_URLS", "No image URL.")
    elif len(urls) > limits.max_urls_per_row:
        problems.add(row, URLS_COLUMN, "TOO_MANY_URLS", f"{len(urls)} URLs; at most {limits.max_urls_per_row}.")
    for position, url in enumerate(urls, start=1):
        reason = url_problem(url, limits.max_url_length)
        if reason:
            problems.add(row, URLS_COLUMN, "INVALID_URL", f"URL {position} ({shortened(url, QUOTED_CHARS)}): {reason}")
    if problems.found != before:
        return None
    return ProductRow(row, serial, name, tuple(urls))
