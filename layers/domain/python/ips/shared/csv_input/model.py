"""What a products CSV is made of: its columns, its limits, its rows, and how it is cut into chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ips.shared.errors import InvalidInput, Problem

SERIAL_COLUMN = "S. No."
NAME_COLUMN = "Product Name"
URLS_COLUMN = "Input Image Urls"
REQUIRED_COLUMNS = {"sno": SERIAL_COLUMN, "productname": NAME_COLUMN, "inputimageurls": URLS_COLUMN}


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


# The presigned route: the client sends the file straight to S3, and it is validated as a stream (intake) and read
# by chunks (expansion) under these.
PRESIGNED_CSV_LIMITS = CsvLimits(max_bytes=100 * 1024 * 1024, max_rows=200_000)


@dataclass(frozen=True)
class ProductRow:
    row: int  # spreadsheet row number: the header is row 1, the first product row 2
    serial_number: str
    product_name: str
    image_urls: tuple[str, ...]


def csv_invalid(problems: list[Problem], *, omitted: int = 0) -> InvalidInput:
    return InvalidInput("CSV_INVALID", "The CSV file is invalid.", problems, omitted=omitted)


class Problems:
    """The problems of one file: the first `cap` listed, the rest counted."""

    def __init__(self, cap: int) -> None:
        self.items: list[Problem] = []
        self.cap = cap
        self.found = 0

    @property
    def omitted(self) -> int:
        return self.found - len(self.items)

    def add(self, row: int | None, column: str | None, code: str, message: str) -> None:
        self.found += 1
        if len(self.items) < self.cap:
            self.items.append(Problem(row, column, code, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise csv_invalid(self.items, omitted=self.omitted)


def normalise_header(name: str) -> str:
    """Headers match ignoring case, spaces and dots: 'S. No.' == 's no' == 'SNO'."""
    return re.sub(r"[\s.]+", "", name).lower()


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
