"""The local cloud as a user runs it (`python -m localcloud up`, a child process), driven over HTTP."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localcloud.peers import WebhookReceiver
from localcloud.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"e2e-tests-signing-key-0123456789").decode()
KEYS = ("tenant-a-key", "tenant-b-key", "burst-key")
PRESIGNED_MAX_BYTES = 64 * 1024
# The direct route's cap, lowered so a small file can be "big": over it, clients take the presigned route.
DIRECT_MAX_BYTES = 16 * 1024


@dataclass(frozen=True)
class Cloud:
    url: str
    aws_url: str  # the local cloud's AWS emulator, to look behind the API
    receiver: WebhookReceiver
    log: Path


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        yield receiver


@pytest.fixture(scope="session")
def cloud(image_server, webhook_receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    state = tmp_path_factory.mktemp("localcloud")
    gateway_port, aws_port = free_port(), free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}",
        "GATEWAY_PORT": str(gateway_port),
        "AWS_PORT": str(aws_port),
        "LOCAL_STATE_DIR": str(state),
        # The burst key has a usage plan of its own (1 request/s, burst 5) so throttling is certain, not timing.
        "API_KEYS": f"{KEYS[0]},{KEYS[1]},{KEYS[2]}:1:5",
        "THROTTLE_RATE": "20",
        "THROTTLE_BURST": "20",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OUTBOUND_ALLOWLIST": f"{image_server.origin},{webhook_receiver.origin}",
        "LOCAL_VISIBILITY_TIMEOUT": "5",
        "PRESIGNED_CSV_MAX_BYTES": str(PRESIGNED_MAX_BYTES),
        "CSV_MAX_BYTES": str(DIRECT_MAX_BYTES),
    }
    for inherited in ("AWS_ENDPOINT_URL", "MONGODB_URI"):
        environment.pop(inherited, None)
    log = state / "localcloud.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "localcloud", "up"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(gateway_port, process, timeout=90)
        yield Cloud(f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{aws_port}", webhook_receiver, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if process.returncode not in (0, -15):
            print(log.read_text(errors="replace")[-5000:])
