"""The direct upload's form (ips_runtime.multipart over python-multipart): the fields as sent, whatever bytes they
hold, the same answer the email-parser version gave for what clients send, and a clear refusal otherwise."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from ips_runtime.multipart import MultipartInvalid, form_fields


def encoded(files: dict[str, bytes], data: dict[str, str]) -> tuple[str, bytes]:
    """As `requests` (and so the `ips` CLI) sends a form."""
    prepared = requests.Request(
        "POST",
        "http://unused.invalid/",
        files={name: (f"{name}.csv", value, "text/csv") for name, value in files.items()},
        data=data,
    ).prepare()
    return prepared.headers["Content-Type"], prepared.body  # type: ignore[return-value]


def email_parser_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """The parsing this replaced (the standard library's MIME parser behind a made-up header): the oracle."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name not in fields:
            payload = part.get_payload(decode=True)
            fields[name] = payload if isinstance(payload, bytes) else b""
    return fields


def test_the_file_and_the_other_fields() -> None:
    csv = b"S. No.,Product Name,Input Image Urls\r\n1,Mug,http://127.0.0.1:1/a.jpg\r\n"
    content_type, body = encoded({"file": csv}, {"webhookUrl": "http://127.0.0.1:2/hook", "quality": "70"})
    assert form_fields(content_type, body) == {
        "file": csv,
        "webhookUrl": b"http://127.0.0.1:2/hook",
        "quality": b"70",
    }


def test_a_browsers_form_with_a_name_sent_twice_keeps_the_first() -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="p.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n"
        b"a,b\r\n--not-the-boundary\r\n\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"\r\n\r\n'
        b"second\r\n"
        b"--XyZ--\r\n"
    )
    assert form_fields('multipart/form-data; boundary="XyZ"', body) == {"file": b"a,b\r\n--not-the-boundary\r\n"}


@settings(max_examples=60, deadline=None)
@given(
    file=st.binary(max_size=2000),
    fields=st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12).filter(
            lambda name: name != "file"
        ),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
        max_size=4,
    ),
)
def test_what_clients_send_parses_as_the_email_parser_parsed_it(file: bytes, fields: dict[str, str]) -> None:
    content_type, body = encoded({"file": file}, fields)
    parsed = form_fields(content_type, body)
    assert parsed == email_parser_fields(content_type, body)
    assert parsed["file"] == file
    assert {name: value.decode() for name, value in parsed.items() if name != "file"} == fields


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\nfile\r\n--x--\r\n"),  # no boundary
        ("multipart/form-data; boundary=x", b"not a form at all"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc'),
        ("multipart/form-data; boundary=" + "x" * 200, b""),  # over the parser's boundary limit
    ],
)
def test_a_body_that_is_not_a_form_is_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(MultipartInvalid):
        form_fields(content_type, body)
