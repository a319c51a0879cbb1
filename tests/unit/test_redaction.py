"""Logs keep where a URL points, never its query string (tokens): ips.shared.redaction, installed by observability()."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ips.shared.redaction import install_url_redaction, redact_url, redact_urls
from ips_adapters.outbound import OutboundClient, OutboundPolicy
from ips_runtime.observability import observability

SECRET = "tok-81b4e7"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (f"https://cdn.test/a/b.jpg?token={SECRET}", "https://cdn.test/a/b.jpg?[redacted]"),
        (f"http://cdn.test:8080/b.jpg?x=1&sig={SECRET}#frag", "http://cdn.test:8080/b.jpg?[redacted]"),
        (f"https://cdn.test/b.jpg#{SECRET}", "https://cdn.test/b.jpg?[redacted]"),
        (f"https://user:{SECRET}@cdn.test/b.jpg", "https://cdn.test/b.jpg"),
        (f"http://[2001:db8::1]:81/p?{SECRET}", "http://[2001:db8::1]:81/p?[redacted]"),
        (f"http://[::1/p?{SECRET}", "http://[::1/p?[redacted]"),  # unparsable: cut all the same
        ("https://cdn.test/plain.jpg", "https://cdn.test/plain.jpg"),
    ],
)
def test_redact_url_keeps_where_it_points_and_drops_what_could_be_a_secret(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_urls_in_free_text_and_request_lines() -> None:
    text = f'fetching http://a.test/x.png?k={SECRET}, then "GET /y.png?k={SECRET} HTTP/1.1" 200; 3 < 4 ? yes'
    assert redact_urls(text) == (
        'fetching http://a.test/x.png?[redacted], then "GET /y.png?[redacted] HTTP/1.1" 200; 3 < 4 ? yes'
    )


@pytest.fixture
def redacted_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    install_url_redaction()  # caplog's handler is on the root logger now, like Lambda's own handler
    return caplog


def test_message_arguments_extras_and_tracebacks_are_redacted(redacted_logs: pytest.LogCaptureFixture) -> None:
    url = f"https://cdn.test/photo.jpg?token={SECRET}"
    log = logging.getLogger("ips.processing.image")
    log.warning("fetch of %s failed", url, extra={"url": url, "urls": [url], "detail": {"input": url}})
    try:
        raise ValueError(f"cannot decode {url}")
    except ValueError:
        log.exception("image processing crashed on the final attempt", extra={"row": 2})

    assert SECRET not in redacted_logs.text
    first, second = redacted_logs.records
    assert first.getMessage() == "fetch of https://cdn.test/photo.jpg?[redacted] failed"
    assert first.url == "https://cdn.test/photo.jpg?[redacted]"  # type: ignore[attr-defined]
    assert first.urls == ["https://cdn.test/photo.jpg?[redacted]"]  # type: ignore[attr-defined]
    assert first.detail == {"input": "https://cdn.test/photo.jpg?[redacted]"}  # type: ignore[attr-defined]
    assert "ValueError: cannot decode https://cdn.test/photo.jpg?[redacted]" in redacted_logs.text
    assert second.row == 2  # type: ignore[attr-defined]


class Image(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "3")
        self.end_headers()
        self.wfile.write(b"GIF")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_origin() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Image)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()


def test_urllib3_debug_lines_of_a_real_fetch_are_redacted(
    redacted_logs: pytest.LogCaptureFixture, image_origin: tuple[str, int]
) -> None:
    host, port = image_origin
    with OutboundClient(OutboundPolicy(allowlist=frozenset({image_origin}))) as client:
        assert client.fetch(f"http://{host}:{port}/photo.gif?token={SECRET}").body == b"GIF"

    lines = [record.getMessage() for record in redacted_logs.records if record.name.startswith("urllib3")]
    assert any("/photo.gif?[redacted]" in line for line in lines), lines  # urllib3 did log the request
    assert SECRET not in redacted_logs.text


def test_observability_puts_redaction_on_the_function_logger(capsys: pytest.CaptureFixture[str]) -> None:
    logger, _, _ = observability("redaction-test")
    url = f"https://cdn.test/photo.jpg?token={SECRET}"
    logger.warning("accepted", extra={"webhookUrl": url})  # the tests log at WARNING and above
    try:
        raise RuntimeError(f"boom at {url}")
    except RuntimeError:
        logger.exception("unhandled error")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["message"] for line in lines] == ["accepted", "unhandled error"]
    assert lines[0]["webhookUrl"] == "https://cdn.test/photo.jpg?[redacted]"
    assert "RuntimeError: boom at https://cdn.test/photo.jpg?[redacted]" in lines[1]["exception"]
    assert SECRET not in json.dumps(lines)


@pytest.mark.parametrize(
    "text",
    [f"at http://[::1]:8080/p?tok={SECRET}, then", f'"GET /p?{SECRET} HTTP/1.1"', f"(https://a.test/b?{SECRET})."],
)
def test_redacting_twice_is_redacting_once(text: str) -> None:
    # One record passes the filter of every handler it reaches: each pass must leave the previous one alone.
    once = redact_urls(text)
    assert SECRET not in once
    assert redact_urls(once) == once
