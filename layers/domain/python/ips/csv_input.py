"""Parse and validate the products CSV: every problem is collected with its row and column, up to a cap."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ips.errors import InvalidInput, Problem

SERIAL_COLUMN = "S. No."
NAME_COLUMN = "Product Name"
URLS_COLUMN = "Input Image Urls"
_REQUIRED = {"sno": SERIAL_COLUMN, "productname": NAME_COLUMN, "inputimageurls": URLS_COLUMN}
_URL_SEPARATORS = re.compile(r"[,\s]+")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# http(s), a host of letters, digits, dots and hyphens, an optional port under 10000, then no spaces or controls:
# a subset of what the full check below accepts.
_PLAIN_HTTP_URL = re.compile(r"(?i:https?)://[A-Za-z0-9.-]+(?::[0-9]{1,4})?(?:[/?#][^\x00-\x20\x7f]*)?\Z")


@dataclass(frozen=True)
class CsvLimits:
    # The direct route: the CSV (plus its multipart envelope), base64-encoded by API Gateway into the proxy event,
    # must fit Lambda's 6 MiB invocation payload (infra.topology.PayloadLimits.function_body_bytes: 4.45 MiB).
    max_bytes: int = 4 * 1024 * 1024
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


class _ByteLines:
    """Decodes a byte stream line by line (UTF-8, an optional BOM) and knows the byte offset it has reached,
    so record boundaries can be turned into byte ranges. Bad bytes and NUL bytes become problems, not crashes."""

    def __init__(self, raw_lines: Iterable[bytes], limits: CsvLimits, problems: _Problems) -> None:
        self._raw = iter(raw_lines)
        self._limits, self._problems = limits, problems
        self.offset = 0
        self.line_number = 0
        self.saw_text = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = next(self._raw)
        self.line_number += 1
        if self.line_number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw, self.offset = raw[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
        self.offset += len(raw)
        if self.offset > self._limits.max_bytes:
            self._problems.add(None, None, "FILE_TOO_LARGE", f"The file is over {self._limits.max_bytes} bytes.")
            self._problems.raise_if_any()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._problems.add(
                self.line_number,
                None,
                "ENCODING",
                f"Line {self.line_number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8.",
            )
            text = raw.decode("utf-8", "replace")
        if "\x00" in text:
            self._problems.add(None, None, "NUL_BYTE", f"NUL byte in line {self.line_number}; the file is not text.")
            text = text.replace("\x00", "")
        self.saw_text = self.saw_text or bool(text.strip())
        return text


def byte_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a stream of byte chunks into lines, each with its line ending."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        lines = pending.splitlines(keepends=True)
        pending = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        yield from lines
    if pending:
        yield pending


@dataclass(frozen=True)
class Columns:
    """Where the product fields are in each record, learnt from the header."""

    serial: int
    name: int
    urls: int
    width: int
    urls_last: bool  # extra fields at the end of a row are more URLs (the common unquoted form)

    def label(self, index: int) -> str:
        """The column a field index falls in, named as the problems name it."""
        names = {self.serial: SERIAL_COLUMN, self.name: NAME_COLUMN, self.urls: URLS_COLUMN}
        if index in names:
            return names[index]
        return URLS_COLUMN if index >= self.width and self.urls_last else f"column {index + 1}"

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "serial": self.serial,
            "name": self.name,
            "urls": self.urls,
            "width": self.width,
            "urlsLast": self.urls_last,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Columns:
        return cls(
            int(data["serial"]), int(data["name"]), int(data["urls"]), int(data["width"]), bool(data["urlsLast"])
        )


@dataclass(frozen=True)
class Chunk:
    """A run of records as a byte range of the file, and the row number of its first record."""

    start: int
    end: int
    first_row: int
    products: int
    images: int


@dataclass(frozen=True)
class CsvPlan:
    columns: Columns
    chunks: list[Chunk]

    @property
    def total_products(self) -> int:
        return sum(chunk.products for chunk in self.chunks)

    @property
    def total_images(self) -> int:
        return sum(chunk.images for chunk in self.chunks)


class _RecordText:
    """Passes lines to the csv reader and keeps the text of the record being read (the lines since the last
    record ended), so a record the reader refuses can still be located."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._parts: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._parts.append(line)
        return line

    @property
    def record(self) -> str:
        return "".join(self._parts)

    def record_done(self) -> None:
        self._parts.clear()


def _overlong_field(text: str, limit: int) -> int | None:
    """The index of the first field of a CSV record (excel dialect) longer than `limit` characters, or None."""
    index, length, position, end = 0, 0, 0, len(text)
    while position < end:
        if text[position] == '"' and length == 0:  # a quoted field: up to the closing quote ("" is a quote)
            position += 1
            while position < end:
                char = text[position]
                position += 1
                if char == '"':
                    if position < end and text[position] == '"':
                        position += 1
                    else:
                        break
                length += 1
                if length > limit:
                    return index
            continue
        char = text[position]
        position += 1
        if char == ",":
            index, length = index + 1, 0
        elif char not in "\r\n":
            length += 1
            if length > limit:
                return index
    return None


class ProductReader:
    """Validates records as they stream in. Iterating yields each good product; at the end it raises
    InvalidInput listing every problem found, so act on the products only once iteration has finished."""

    def __init__(self, lines: Iterable[str], limits: CsvLimits, problems: _Problems | None = None) -> None:
        self.limits = limits
        self.problems = problems or _Problems(limits.max_problems)
        self._lines = _RecordText(lines)
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
        serial, name, urls = (found[key] for key in _REQUIRED)
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
                    row, SERIAL_COLUMN, "DUPLICATE_SERIAL", f"Serial number {serial!r} already used in row {previous}."
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
        index = _overlong_field(self._lines.record, csv.field_size_limit())
        if index is None:
            self.problems.add(row, None, "CSV_SYNTAX", f"The record cannot be read as CSV: {exc}.")
        else:
            label = columns.label(index) if columns is not None else f"column {index + 1}"
            self.problems.add(
                row, label, "FIELD_TOO_LONG", f"Over {csv.field_size_limit()} characters; the file is read no further."
            )
        raise csv_invalid(self.problems.items, truncated=self.problems.truncated) from None


def _open_reader(raw_lines: Iterable[bytes], limits: CsvLimits) -> tuple[ProductReader, _ByteLines]:
    problems = _Problems(limits.max_problems)
    lines = _ByteLines(raw_lines, limits, problems)
    try:
        return ProductReader(lines, limits, problems), lines
    except InvalidInput:
        if not lines.saw_text and not any(problem.code == "FILE_TOO_LARGE" for problem in problems.items):
            raise csv_invalid([Problem(None, None, "EMPTY_FILE", "The file is empty.")]) from None
        raise


def plan_csv(raw_lines: Iterable[bytes], limits: CsvLimits = CsvLimits(), chunk_images: int = 1000) -> CsvPlan:
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


def parse_products_csv(data: bytes, limits: CsvLimits = CsvLimits()) -> list[ProductRow]:
    """Validate a whole CSV held in memory; returns its products in file order or raises InvalidInput."""
    return list(_open_reader(byte_lines([data]), limits)[0])


def read_chunk(data: bytes, chunk: Chunk, columns: Columns, limits: CsvLimits = CsvLimits()) -> list[ProductRow]:
    """The products of one chunk (already validated as part of the whole file)."""
    problems = _Problems(limits.max_problems)
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
    row: int, record: list[str], columns: Columns, limits: CsvLimits, problems: _Problems
) -> ProductRow | None:
    serial_index, name_index, urls_index = columns.serial, columns.name, columns.urls
    width, urls_last = columns.width, columns.urls_last
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
    if _PLAIN_HTTP_URL.match(url):
        return None  # the common case, decided without the full parser (validation is the upload's cost)
    return full_url_problem(url)


def full_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "only http and https URLs are accepted"
    if not parts.hostname:
        return "the URL has no host"
    if _SPACE_OR_CONTROL.search(url):
        return "the URL contains spaces or control characters"
    return None


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
