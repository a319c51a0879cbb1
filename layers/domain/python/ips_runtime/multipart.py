"""The fields of a multipart/form-data body (the direct upload's form), by python-multipart's streaming parser.

Each field's value is its bytes as sent (forms carry no Content-Transfer-Encoding, RFC 7578 §4.7); a name sent
twice keeps its first value. A body the parser cannot read is MultipartInvalid."""

from __future__ import annotations

from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # declared for type checkers only


class MultipartInvalid(ValueError):
    pass


def form_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise MultipartInvalid("the content type names no boundary")
    form = _Form()
    try:
        parser = MultipartParser(boundary, form.callbacks())
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise MultipartInvalid(str(exc)) from None
    if not form.ended:
        raise MultipartInvalid("the body ends before its closing boundary")
    return form.fields


class _Form:
    """Collects the parts as the parser reports them: header names and values arrive in pieces."""

    def __init__(self) -> None:
        self.fields: dict[str, bytes] = {}
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._name, self._value = bytearray(), bytearray()
        self._data: list[bytes] = []

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._data.append(bytes(data[start:end])),
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers, self._data = {}, []

    def _header_end(self) -> None:
        self._headers[bytes(self._name).strip().lower()] = bytes(self._value).strip()
        self._name, self._value = bytearray(), bytearray()

    def _part_end(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"").decode("latin-1")
        name = parse_options_header(disposition)[1].get(b"name")
        if name is not None:
            self.fields.setdefault(name.decode("utf-8", "replace"), b"".join(self._data))

    def _end(self) -> None:
        self.ended = True
