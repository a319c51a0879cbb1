"""Refused input: a stable code and every problem found, each with its row and column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    row: int | None  # spreadsheet row (the header is row 1), or None for the whole file or a field
    column: str | None
    code: str
    message: str


def failure_record(
    code: str, message: str, problems: Sequence[Problem] = (), *, truncated: bool = False
) -> dict[str, Any]:
    """Why a request failed, as the catalog stores it and the status document reads it."""
    return {
        "code": code,
        "message": message,
        "errors": [asdict(problem) for problem in problems],
        "errorsTruncated": truncated,
    }


class InvalidInput(Exception):
    def __init__(self, code: str, message: str, problems: list[Problem], *, truncated: bool = False) -> None:
        super().__init__(f"{message} ({len(problems)} problem(s){', truncated' if truncated else ''})")
        self.code, self.message, self.problems, self.truncated = code, message, problems, truncated
