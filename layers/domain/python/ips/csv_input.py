"""Parse and validate the products CSV: every problem is collected with its row and column, up to a cap."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from ips.errors import InvalidInput, Problem

SERIAL_COLUMN = "S. No."
NAME_COLUMN = "Product Name"
URLS_COLUMN = "Input Image Urls"
_REQUIRED = {"sno": SERIAL_COLUMN, "productname": NAME_COLUMN, "inputimageurls": URLS_COLUMN}
_URL_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class CsvLimits:
    max_bytes: int = 5 * 1024 * 1024
    max_rows: int = 10_000
    max_urls_per_row: int = 50
    max_url_length: int = 2048
    max_field_length: int = 256
    max_problems: int = 100


@dataclass(frozen=True)
class ProductRow:
    row: int  # spreadsheet row number: the header is row 1, the first product row 2
    serial_number: str
    product_name: str
    image_urls: tuple[str, ...]


def csv_invalid(problems: list[Problem], *, truncated: bool = False) -> InvalidInput:
    return InvalidInput("CSV_INVALID", "The CSV file is invalid.", problems, truncated=truncated)


class _Problems:
    def __init__(self, cap: int) -> None:
        self.items: list[Problem] = []
        self.cap = cap
        self.truncated = False

    def add(self, row: int | None, column: str | None, code: str, message: str) -> None:
        if len(self.items) < self.cap:
            self.items.append(Problem(row, column, code, message))
        else:
            self.truncated = True

    def raise_if_any(self) -> None:
        if self.items:
            raise csv_invalid(self.items, truncated=self.truncated)


def normalise_header(name: str) -> str:
    """Headers match ignoring case, spaces and dots: 'S. No.' == 's no' == 'SNO'."""
    return re.sub(r"[\s.]+", "", name).lower()


def decode_csv_bytes(data: bytes) -> str:
    """UTF-8 with or without a BOM; anything else is refused with the offending row."""
    if not data.strip():
        raise csv_invalid([Problem(None, None, "EMPTY_FILE", "The file is empty.")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n") + 1
        raise csv_invalid(
            [
                Problem(
                    row,
                    None,
                    "ENCODING",
                    f"The file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                    "save it as UTF-8.",
                )
            ]
        ) from None


def parse_products_csv(data: bytes, limits: CsvLimits = CsvLimits()) -> list[ProductRow]:
    """Validate a whole CSV; returns its products in file order or raises InvalidInput listing every problem."""
    if len(data) > limits.max_bytes:
        raise csv_invalid([Problem(None, None, "FILE_TOO_LARGE", f"The file is over {limits.max_bytes} bytes.")])
    return list(iter_products(io.StringIO(decode_csv_bytes(data), newline=""), limits))


def iter_products(lines: Iterable[str], limits: CsvLimits = CsvLimits()) -> Iterator[ProductRow]:
    """Validate rows as they stream in, yielding each good one. Raises InvalidInput at the end if any row was
    bad, so a caller acts on the rows only once the iterator has finished without error."""
    problems = _Problems(limits.max_problems)
    reader = csv.reader(_refuse_nul(lines, problems))
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        problems.add(1, None, "MISSING_HEADER", _header_message())
        problems.raise_if_any()
        return
    columns = _locate_columns(header, problems)
    problems.raise_if_any()
    serial_index, name_index, urls_index = (columns[key] for key in _REQUIRED)
    width = len(header)
    urls_last = urls_index == max(columns.values()) and all(not c.strip() for c in header[urls_index + 1 :])
    first_row_of_serial: dict[str, int] = {}
    count = 0
    for record_number, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        count += 1
        if count > limits.max_rows:
            problems.add(record_number, None, "TOO_MANY_ROWS", f"More than {limits.max_rows} product rows.")
            break
        serial = record[serial_index].strip() if serial_index < len(record) else ""
        previous = first_row_of_serial.setdefault(serial, record_number) if serial else record_number
        if previous != record_number:
            problems.add(
                record_number,
                SERIAL_COLUMN,
                "DUPLICATE_SERIAL",
                f"Serial number {serial!r} already used in row {previous}.",
            )
        product = _validate_row(
            record_number, record, (serial_index, name_index, urls_index), width, urls_last, limits, problems
        )
        if product is not None and previous == record_number:
            yield product
    if count == 0 and not problems.items:
        problems.add(None, None, "NO_PRODUCTS", "The file has a header but no product rows.")
    problems.raise_if_any()


def _refuse_nul(lines: Iterable[str], problems: _Problems) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if "\x00" in line:
            problems.add(None, None, "NUL_BYTE", f"NUL byte in physical line {number}; the file is not text.")
            line = line.replace("\x00", "")
        yield line


def _header_message() -> str:
    return f"The first row must be the header: {SERIAL_COLUMN},{NAME_COLUMN},{URLS_COLUMN}."


def _locate_columns(header: list[str], problems: _Problems) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        key = normalise_header(name)
        if key in _REQUIRED:
            if key in columns:
                problems.add(1, _REQUIRED[key], "DUPLICATE_COLUMN", f"Column {_REQUIRED[key]!r} appears twice.")
            columns.setdefault(key, index)
    for key, label in _REQUIRED.items():
        if key not in columns:
            problems.add(1, label, "MISSING_COLUMN", f"Missing column {label!r}. {_header_message()}")
    return columns


def _validate_row(
    row: int,
    record: list[str],
    indexes: tuple[int, int, int],
    width: int,
    urls_last: bool,
    limits: CsvLimits,
    problems: _Problems,
) -> ProductRow | None:
    serial_index, name_index, urls_index = indexes
    before = len(problems.items)

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
            problems.add(row, URLS_COLUMN, "INVALID_URL", f"URL {position} ({_shorten(url)}): {reason}")
    if len(problems.items) != before or problems.truncated:
        return None
    return ProductRow(row, serial, name, tuple(urls))


def url_problem(url: str, max_length: int = 2048) -> str | None:
    """Why a URL cannot be an image source, or None. Address checks happen when it is fetched."""
    if len(url) > max_length:
        return f"longer than {max_length} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "only http and https URLs are accepted"
    if not parts.hostname:
        return "the URL has no host"
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        return "the URL contains spaces or control characters"
    return None


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
