"""Reading a CSV's bytes as text lines (with the byte offsets chunks are cut at) and locating a refused record."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from ips.shared.csv_input.model import CsvLimits, Problems


class ByteLines:
    """Decodes a byte stream line by line (UTF-8, an optional BOM) and knows the byte offset it has reached,
    so record boundaries can be turned into byte ranges. Bad bytes and NUL bytes become problems, not crashes."""

    def __init__(self, raw_lines: Iterable[bytes], limits: CsvLimits, problems: Problems) -> None:
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


class RecordText:
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


def overlong_field(text: str, limit: int) -> int | None:
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
