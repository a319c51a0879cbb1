"""What the `ips` command sends, seen by a recording server on 127.0.0.1: the per-request options only when
given (form fields on the direct route, JSON on the presigned one), the fallback to the presigned S3 POST when
the direct route answers 413, and the API key never sent to storage."""

from __future__ import annotations

import email.policy
import json
import os
import subprocess
import sys
import threading
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from localcloud.peers import LoopbackServer, Quiet

IPS = Path(sys.executable).parent / "ips"
OPTIONS = ["--format", "webp", "--quality", "70", "--max-width", "800", "--max-height", "600", "--background", "#fff"]
SENT_OPTIONS = {"format": "webp", "quality": "70", "maxWidth": "800", "maxHeight": "600", "background": "#fff"}


class RecordingApi(LoopbackServer):
    def __init__(self, *, direct_full: bool = False) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        api = self

        class Handler(Quiet, BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with api.lock:
                    api.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                status, answer = api.answer(self.path)
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.direct_full = direct_full
        super().__init__(Handler)

    def answer(self, path: str) -> tuple[int, dict | None]:
        if path == "/api/v1/upload":
            if self.direct_full:
                return 413, {"code": "PAYLOAD_TOO_LARGE", "message": "Over this route's limit.", "errors": []}
            return 202, {"requestId": "direct-1", "status": "PENDING", "statusUrl": "/api/v1/status/direct-1"}
        if path == "/api/v1/uploads":
            fields = {"key": "incoming/presigned-1.csv", "Content-Type": "text/csv", "policy": "cG9saWN5"}
            upload = {"url": f"{self.url}/bucket", "fields": fields}
            return 201, {"requestId": "presigned-1", "upload": upload, "expiresIn": 900, "maxBytes": 1 << 20}
        if path == "/bucket":
            return 204, None
        return 404, {"code": "NOT_FOUND", "message": "No such route."}

    def by_path(self, path: str) -> list[dict]:
        return [request for request in self.requests if request["path"] == path]


def form_fields(request: dict) -> dict[str, str]:
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {request['headers']['Content-Type']}\r\n\r\n".encode() + request["body"]
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
        for part in message.iter_parts()
    }


def ips(api: RecordingApi, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "IPS_API_URL": api.url, "IPS_API_KEY": "secret-key"}
    return subprocess.run([str(IPS), *args], env=environment, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "products.csv"
    path.write_text("S. No.,Product Name,Input Image Urls\n1,Mug,http://127.0.0.1:9/a.jpg\n")
    return path


def test_the_direct_route_gets_the_options_as_form_fields(csv_file: Path) -> None:
    with RecordingApi() as api:
        run = ips(api, "upload", str(csv_file), *OPTIONS, "--webhook", "http://127.0.0.1:9/hook")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "direct-1"
    [sent] = api.requests
    assert sent["headers"]["x-api-key"] == "secret-key"
    fields = form_fields(sent)
    assert fields["file"] == csv_file.read_text()
    assert {key: value for key, value in fields.items() if key != "file"} == {
        **SENT_OPTIONS,
        "webhookUrl": "http://127.0.0.1:9/hook",
    }


def test_options_not_given_are_not_sent(csv_file: Path) -> None:
    with RecordingApi() as api:
        assert ips(api, "upload", str(csv_file)).returncode == 0
    assert set(form_fields(api.requests[0])) == {"file"}


def test_a_413_sends_the_file_the_presigned_way_with_the_options_as_json(csv_file: Path) -> None:
    with RecordingApi(direct_full=True) as api:
        run = ips(api, "upload", str(csv_file), *OPTIONS)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "presigned-1" and "presigned route" in run.stderr
    assert [request["path"] for request in api.requests] == ["/api/v1/upload", "/api/v1/uploads", "/bucket"]
    [slot] = api.by_path("/api/v1/uploads")
    assert json.loads(slot["body"]) == {
        "format": "webp",
        "quality": 70,
        "maxWidth": 800,
        "maxHeight": 600,
        "background": "#fff",
        "filename": "products.csv",
    }
    [stored] = api.by_path("/bucket")
    assert "x-api-key" not in {key.lower() for key in stored["headers"]}  # storage never sees the key
    fields = form_fields(stored)
    assert list(fields) == ["key", "Content-Type", "policy", "file"]  # the policy fields first, the file last
    assert fields["file"] == csv_file.read_text()


def test_a_file_over_the_direct_cap_skips_the_direct_route(tmp_path: Path) -> None:
    from ips_cli.client import DIRECT_UPLOAD_MAX_BYTES

    big = tmp_path / "big.csv"
    big.write_bytes(b"S. No.,Product Name,Input Image Urls\n" + b"#" * DIRECT_UPLOAD_MAX_BYTES)
    with RecordingApi() as api:
        assert ips(api, "upload", str(big)).returncode == 0
    assert [request["path"] for request in api.requests] == ["/api/v1/uploads", "/bucket"]
