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
import requests

from localcloud.peers import WebhookReceiver
from localcloud.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"e2e-tests-signing-key-0123456789").decode()  # the master
KEYS = ("tenant-a-key", "tenant-b-key", "burst-key")
# Two tenants whose usage plans are too generous to throttle: the concurrency tests need every call to reach a function.
UNTHROTTLED_KEYS = ("crowd-a-key", "crowd-b-key")
QUOTA_KEY = "small-quota-key"  # 3 images a day (IMAGE_QUOTAS)
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


def cloud_environment(state: Path, gateway_port: int, aws_port: int, image_server, webhook_receiver) -> dict[str, str]:
    """What `make up` is started with in these tests: free ports, a state folder of its own, fast retries."""
    environment = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}",
        "GATEWAY_PORT": str(gateway_port),
        "AWS_PORT": str(aws_port),
        "LOCAL_STATE_DIR": str(state),
        # The burst key has a usage plan of its own (1 request/s, burst 5) so throttling is certain, not timing.
        "API_KEYS": f"{KEYS[0]},{KEYS[1]},{KEYS[2]}:1:5,{QUOTA_KEY},"
        + ",".join(f"{key}:10000:10000" for key in UNTHROTTLED_KEYS),
        "IMAGE_QUOTAS": f"{QUOTA_KEY}:3:100",
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
    return environment


def start_local_cloud(
    environment: dict[str, str], log: Path, *, foreground_group: bool = False
) -> subprocess.Popen[bytes]:
    """`python -m localcloud up` as a child process, once its gateway listens. `foreground_group`: in a process
    group of its own, as a terminal runs a foreground job (Ctrl-C is SIGINT to the whole group)."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "localcloud", "up"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            process_group=0 if foreground_group else None,
        )
    try:
        # It listens once its functions are warm: on a loaded 2-core machine that can take a minute or more.
        wait_for_port(int(environment["GATEWAY_PORT"]), process, timeout=240)
    except BaseException:
        stop_local_cloud(process, log)
        raise
    return process


def stop_local_cloud(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, as a user's Ctrl-C or a service manager stops it; it must exit cleanly."""
    process.terminate()
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.returncode not in (0, -15):
        print(log.read_text(errors="replace")[-5000:])


@pytest.fixture(scope="session")
def cloud(image_server, webhook_receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    state = tmp_path_factory.mktemp("localcloud")
    gateway_port, aws_port = free_port(), free_port()
    log = state / "localcloud.log"
    process = start_local_cloud(cloud_environment(state, gateway_port, aws_port, image_server, webhook_receiver), log)
    try:
        # The receiver is tenant A's (the tests' webhooks are A's): it verifies with A's own secret, from the API.
        answer = requests.get(
            f"http://127.0.0.1:{gateway_port}/api/v1/webhook-secret", headers={"x-api-key": KEYS[0]}, timeout=30
        )
        answer.raise_for_status()
        webhook_receiver.use_secret(answer.json()["secret"])
        yield Cloud(f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{aws_port}", webhook_receiver, log)
    finally:
        stop_local_cloud(process, log)
