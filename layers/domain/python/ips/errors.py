"""Refused input: a stable code and every problem found, each with its row and column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    row: int | None  # spreadsheet row (the header is row 1), or None for the whole file or a field
    column: str | None
    code: str
    message: str


class InvalidInput(Exception):
    def __init__(self, code: str, message: str, problems: list[Problem], *, truncated: bool = False) -> None:
        super().__init__(f"{message} ({len(problems)} problem(s){', truncated' if truncated else ''})")
        self.code, self.message, self.problems, self.truncated = code, message, problems, truncated
