"""Status cursors: every row this API can hand out reads back, and anything else is 400 CURSOR_INVALID."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ips.shared.errors import InvalidInput
from ips.status.service import MAX_CURSOR_ROW, decode_cursor, encode_cursor


def forge(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@given(st.integers(min_value=0, max_value=MAX_CURSOR_ROW))
def test_every_row_round_trips(row: int) -> None:
    assert decode_cursor(encode_cursor(row)) == row


@pytest.mark.parametrize(
    "cursor",
    [
        forge("row:²"),  # str.isdigit() accepts it, int() does not
        forge("row:" + "9" * 44),  # past MongoDB's 64-bit integers
        forge(f"row:{MAX_CURSOR_ROW + 1}"),
        forge("row:-1"),
        forge("row:007"),
        forge("row:"),
        forge("row:١٢"),  # Arabic-Indic digits
        forge("col:3"),
        encode_cursor(3) + "==",  # padding variants of a good cursor
        encode_cursor(3) + "!",  # characters base64 would silently skip
        "cm93OjM\u00e9",
        "",
        "%%%",
    ],
)
def test_forged_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_cursor(cursor)
    assert refused.value.code == "CURSOR_INVALID"


@given(
    st.one_of(
        st.text(max_size=80),
        st.text(max_size=40).map(forge),
        st.binary(max_size=40).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
    )
)
def test_any_string_is_a_row_that_encodes_back_to_it_or_is_refused(cursor: str) -> None:
    try:
        row = decode_cursor(cursor)
    except InvalidInput as refused:
        assert refused.code == "CURSOR_INVALID"
    else:
        assert 0 <= row <= MAX_CURSOR_ROW and encode_cursor(row) == cursor
