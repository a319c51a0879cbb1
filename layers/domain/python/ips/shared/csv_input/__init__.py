"""Parse and validate the products CSV: every problem is collected with its row and column, up to a cap.

`model` holds what a CSV is made of (columns, limits, rows, chunks), `lines` reads bytes as lines with their
offsets, `urls` says whether a URL can be a source, `reader` validates records as they stream in."""

from ips.shared.csv_input.lines import byte_lines
from ips.shared.csv_input.model import (
    NAME_COLUMN,
    PRESIGNED_CSV_LIMITS,
    SERIAL_COLUMN,
    URLS_COLUMN,
    Chunk,
    Columns,
    CsvLimits,
    CsvPlan,
    ProductRow,
    csv_invalid,
    normalise_header,
)
from ips.shared.csv_input.reader import ProductReader, parse_products_csv, plan_csv, read_chunk
from ips.shared.csv_input.urls import full_url_problem, url_problem

__all__ = [
    "NAME_COLUMN",
    "PRESIGNED_CSV_LIMITS",
    "SERIAL_COLUMN",
    "URLS_COLUMN",
    "Chunk",
    "Columns",
    "CsvLimits",
    "CsvPlan",
    "ProductReader",
    "ProductRow",
    "byte_lines",
    "csv_invalid",
    "full_url_problem",
    "normalise_header",
    "parse_products_csv",
    "plan_csv",
    "read_chunk",
    "url_problem",
]
