"""Refused input: a stable code and the problems found, each with its row and column.

Every answer must fit a Lambda response, whatever the input: at most MAX_PROBLEMS problems are listed (the rest
are counted, `omitted`), and a problem's message, which may quote the input (a serial number, an option's
value), is cut to MESSAGE_MAX_CHARS characters. So a refusal, stored or answered, stays a few hundred kB at
most however the file or the request was made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

MAX_PROBLEMS = 100
MESSAGE_MAX_CHARS = 300
QUOTED_CHARS = 80  # how much of an input value (a URL, a serial number, an option) a message quotes


def shortened(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """`text`, cut to `limit` characters (an ellipsis says so): free text quoting input or a server's answer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Problem:
    row: int | None  # spreadsheet row (the header is row 1), or None for the whole file or a field
    column: str | None
    code: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", shortened(self.message))


def listed(problems: Sequence[Problem], omitted: int = 0) -> tuple[list[Problem], int]:
    """The problems an answer lists (the first MAX_PROBLEMS) and how many it leaves out."""
    return list(problems[:MAX_PROBLEMS]), omitted + max(0, len(problems) - MAX_PROBLEMS)


def failure_record(code: str, message: str, problems: Sequence[Problem] = (), *, omitted: int = 0) -> dict[str, Any]:
    """Why a request failed, as the catalog stores it and the status document reads it."""
    kept, omitted = listed(problems, omitted)
    return {
        "code": code,
        "message": shortened(message),
        "errors": [asdict(problem) for problem in kept],
        "errorsOmitted": omitted,
    }


class InvalidInput(Exception):
    """`omitted`: problems found beyond those listed (the CSV's cap)."""

    def __init__(self, code: str, message: str, problems: list[Problem], *, omitted: int = 0) -> None:
        super().__init__(
            f"{message} ({len(problems) + omitted} problem(s){f', {omitted} not listed' if omitted else ''})"
        )
        self.code, self.message, self.problems, self.omitted = code, message, problems, omitted
