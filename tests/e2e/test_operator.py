"""`make up` as an operator runs it: bad settings refused before anything starts, a normal run that prints nothing
but its banner, a catalogue of 2,000-character URLs listed to the end page by page, and Ctrl-C (SIGINT to the
terminal's whole process group) stopping it with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE

import pytest
import requests

from infra.topology import TOPOLOGY
from localcloud.servers import free_port
from tests.e2e.conftest import KEYS, ROOT, cloud_environment, start_local_cloud, stop_local_cloud
from tests.e2e.test_local_cloud import HEADER

LIMITS = TOPOLOGY.payload_limits
FINAL = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED")
# What an operator should never see on a normal run or a stop.
NOISE = ("Traceback", "KeyboardInterrupt", "Warning", '"_aws"', "No application metrics")


def test_bad_settings_are_refused_before_anything_starts_one_line_each(
    image_server, webhook_receiver, tmp_path: Path
) -> None:
    """They were found by each execution environment as it started (three tracebacks) and the cloud kept
    running, failing requests."""
    environment = cloud_environment(tmp_path, free_port(), free_port(), image_server, webhook_receiver)
    environment |= {"CSV_MAX_BYTES": "abc", "IMAGE_MAX_PIXELS": "-1"}
    refused = _up(environment)
    assert refused.returncode == 2
    assert refused.stdout == b""
    assert refused.stderr.decode().splitlines() == [
        # each function's settings checked: a variable several read is one line, naming them
        "error: CSV_MAX_BYTES='abc': Input should be a valid integer, unable to parse string as an integer "
        "(the upload, ingest, expand, reconcile functions)",
        "error: IMAGE_MAX_PIXELS='-1': Input should be greater than or equal to 1 (the process function)",
    ]
    assert not (tmp_path / "logs").exists() and not (tmp_path / "mongo").exists()  # no server was started

    environment = {**environment, "CSV_MAX_BYTES": "", "IMAGE_MAX_PIXELS": "", "LOCAL_WORKERS": "0"}
    refused = _up(environment)
    assert (refused.returncode, refused.stderr.decode().splitlines()) == (
        2,
        ["error: LOCAL_WORKERS='0': Input should be greater than or equal to 1"],
    )


def _up(environment: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """`make up` expected to exit by itself; one still running after 3 minutes is stopped (SIGTERM: it stops its
    servers) and the test fails."""
    process = subprocess.Popen(
        [sys.executable, "-m", "localcloud", "up"], cwd=ROOT, env=environment, stdout=PIPE, stderr=PIPE
    )
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.communicate(timeout=180)
        raise AssertionError("still running after 3 minutes: the settings were not refused") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@dataclass
class Foreground:
    """`make up` in a process group of its own, as a terminal's foreground job."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def foreground(image_server, webhook_receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Foreground]:
    state = tmp_path_factory.mktemp("foreground")
    gateway_port = free_port()
    environment = cloud_environment(state, gateway_port, free_port(), image_server, webhook_receiver)
    for limit in ("CSV_MAX_BYTES", "PRESIGNED_CSV_MAX_BYTES"):  # the defaults: a catalogue of long URLs
        environment.pop(limit)
    log = state / "console.log"
    process = start_local_cloud(environment, log, foreground_group=True)
    try:
        yield Foreground(f"http://127.0.0.1:{gateway_port}", process, log)
    finally:
        if process.poll() is None:
            stop_local_cloud(process, log)


def _status(cloud: Foreground, request_id: str, **params: str) -> requests.Response:
    return requests.get(
        f"{cloud.url}/api/v1/status/{request_id}", params=params, headers={"x-api-key": KEYS[0]}, timeout=60
    )


def _wait(cloud: Foreground, request_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = _status(cloud, request_id, limit="1")
        assert answer.status_code == 200, answer.text[:300]
        if answer.json()["status"] in FINAL:
            return answer.json()
        time.sleep(1)
    raise AssertionError(f"not final within {timeout}s; see {cloud.log}")


def test_a_catalogue_of_2000_character_urls_is_listed_to_the_end_page_by_page(
    foreground: Foreground, image_server
) -> None:
    """500 products of 3 signed CDN-style URLs of 2,000 characters (gone from the image host: every image fails
    with its reason). A page of them was cut by a measure that left each failed image's null details out:
    3% over, past Lambda's response limit, and the status answered 502 with or without `limit`."""
    rows = []
    for row in range(1, 501):
        urls = []
        for index in range(3):
            url = f"{image_server.url}/catalogue/{row}/{index}.jpg?X-Amz-Credential=AKIA%2F{row}&X-Amz-Signature="
            urls.append((url + "f0e1d2c3b4a59687" * 125)[:2000])
        rows.append(f'{row},Product {row},"{",".join(urls)}"\n')
    answer = requests.post(
        f"{foreground.url}/api/v1/upload",
        headers={"x-api-key": KEYS[0], "content-type": "text/csv"},
        data=(HEADER + "".join(rows)).encode(),
        timeout=120,
    )
    assert answer.status_code == 202, answer.text[:300]
    request_id = answer.json()["requestId"]
    final = _wait(foreground, request_id, timeout=900)
    assert (final["status"], final["failed"]) == ("COMPLETED_WITH_ERRORS", 1500)

    for params in ({}, {"limit": "1000"}):
        seen, pages, cursor = [], 0, None
        while True:
            page = _status(foreground, request_id, **params, **({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200, page.text[:300]
            assert len(page.content) < LIMITS.invoke_response_bytes - LIMITS.page_room_bytes
            pages += 1
            products = page.json()["products"]
            assert all(len(url) == 2000 for product in products for url in product["inputImageUrls"])
            seen += [int(product["serialNumber"]) for product in products]
            cursor = page.json()["nextCursor"]
            if cursor is None:
                break
        assert seen == list(range(1, 501)) and pages >= 2  # cut by bytes, not by the 1,000 products of a page


def test_a_normal_run_prints_only_its_banner_and_ctrl_c_stops_it_with_one_line(
    foreground: Foreground, image_server
) -> None:
    # Ordinary traffic: a request with a failed image, status reads (no metrics), an unknown request (a 404).
    answer = requests.post(
        f"{foreground.url}/api/v1/upload",
        headers={"x-api-key": KEYS[0]},
        files={"file": ("p.csv", HEADER + f'1,Mug,"{image_server.url}/sk_coffee.png,{image_server.url}/gone.jpg"\n')},
        timeout=60,
    )
    assert answer.status_code == 202, answer.text
    assert _wait(foreground, answer.json()["requestId"], timeout=300)["status"] == "COMPLETED_WITH_ERRORS"
    assert _status(foreground, "00000000-0000-0000-0000-000000000000").status_code == 404

    os.killpg(foreground.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert foreground.process.wait(timeout=180) == 0
    console = foreground.log.read_text()
    banner, _, after = console.partition("Ctrl-C stops.\n")
    assert after.count("\n") == 1 and after.startswith("Stopping... stopped; the state is kept in "), after[-3000:]
    assert not [noise for noise in NOISE if noise in console], console[-5000:]
    assert all(line.split()[0] in BANNER for line in banner.splitlines()), banner


BANNER = {"Provisioned", "API", "Swagger", "AWS", "DynamoDB", "MongoDB", "Webhook", "State"}
