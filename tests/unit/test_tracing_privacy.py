"""Tracing, enabled as it is in Lambda, sends no trace header to strangers' servers and records no query string.

X-Ray patching is global and permanent for a process, so each case runs in a child Python given Lambda's
variables (LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME, _X_AMZN_TRACE_ID with Sampled=1) and
POWERTOOLS_TRACE_DISABLED=false, with AWS_XRAY_DAEMON_ADDRESS at a UDP socket this test reads: the X-Ray SDK
sends it the very segments it would send the daemon in Lambda. The child builds its tracer with
ips_runtime.observability (as every handler does) and fetches and posts with ips_adapters.outbound (as the
wiring does), to a real server on 127.0.0.1 that records every header it gets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "tok-5f2c9a"  # a token in a query string: must reach the server, never a trace
TRACE_HEADERS = {"x-amzn-trace-id", "traceparent", "tracestate"}

CHILD = """
import json, sys
from ips_runtime.observability import observability

_, _, tracer = observability("process")
if sys.argv[4] == "patch-everything":  # as if other code had patched every library X-Ray can, http.client too
    from aws_xray_sdk.core import patch_all

    patch_all(double_patch=True)
import requests
from ips_adapters.outbound import OutboundClient, OutboundPolicy

image_url, hook_url, control_url = sys.argv[1:4]
client = OutboundClient(OutboundPolicy(allowlist=frozenset({("127.0.0.1", int(sys.argv[5]))})))


@tracer.capture_method
def fetch_and_notify(url):
    fetched = client.fetch(url)
    client.post(hook_url, b'{"url": "' + url.encode() + b'"}', {"content-type": "application/json"})
    return {"final_url": fetched.final_url}


@tracer.capture_lambda_handler
def handler(event, context):
    return {"statusCode": 200, "body": json.dumps(fetch_and_notify(event["url"]))}


handler({"url": image_url}, None)
requests.get(control_url, timeout=5)  # plain requests: carries the header wherever requests is patched
from aws_xray_sdk.core.patcher import _PATCHED_MODULES

print(json.dumps(sorted(_PATCHED_MODULES)))
"""


class Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str]]]

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", "4")
        self.end_headers()
        self.wfile.write(b"\x89PNG")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[ThreadingHTTPServer, list[tuple[str, str, dict[str, str]]]]]:
    seen: list[tuple[str, str, dict[str, str]]] = []
    handler = type("Recording", (Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    """Stands in for the X-Ray daemon: the UDP socket the SDK emits segments to."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    yield udp
    udp.close()


def received_segments(udp: socket.socket) -> list[dict[str, object]]:
    udp.settimeout(0.2)  # the child has exited: everything it sent is already queued here
    segments = []
    while True:
        try:
            datagram = udp.recv(65536).decode()
        except TimeoutError:
            return segments
        header, _, body = datagram.partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        segments.append(json.loads(body))


def run_traced_child(mode: str, server: ThreadingHTTPServer, udp: socket.socket, tmp_path: Path) -> list[str]:
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}",
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "AWS_LAMBDA_FUNCTION_NAME": "process",
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{udp.getsockname()[1]}",
        "AWS_XRAY_CONTEXT_MISSING": "RUNTIME_ERROR",
    }
    arguments = [f"{origin}/photo.png?token={SECRET}", f"{origin}/hook?sig={SECRET}", f"{origin}/control"]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments, mode, str(server.server_address[1])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["as-configured", "patch-everything"])
def test_outbound_requests_carry_no_trace_header_and_traces_no_query_string(
    mode: str,
    recorder: tuple[ThreadingHTTPServer, list[tuple[str, str, dict[str, str]]]],
    daemon: socket.socket,
    tmp_path: Path,
) -> None:
    server, seen = recorder
    patched = run_traced_child(mode, server, daemon, tmp_path)
    segments = received_segments(daemon)

    by_path = {path.partition("?")[0]: headers for _, path, headers in seen}
    assert set(by_path) == {"/photo.png", "/hook", "/control"}
    assert [path for _, path, _ in seen if SECRET in path] == [f"/photo.png?token={SECRET}", f"/hook?sig={SECRET}"]
    for path in ("/photo.png", "/hook"):
        assert not TRACE_HEADERS & set(by_path[path]), (path, by_path[path])

    names = {segment["name"] for segment in segments}
    assert {"## handler", "## __main__.fetch_and_notify"} <= names  # tracing was really on, and emitting
    assert not [segment for segment in segments if SECRET in json.dumps(segment)]
    if mode == "as-configured":
        assert patched == ["botocore", "pymongo"]  # our own backends; never the HTTP stack strangers get
        assert "x-amzn-trace-id" not in by_path["/control"]
    else:
        assert {"requests", "httplib"} <= set(patched)
        assert "x-amzn-trace-id" in by_path["/control"]  # the injection is live: its absence above is meaningful
