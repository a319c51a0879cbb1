"""The chaos suite (`make chaos`): many requests from several tenants through the local cloud (a child process,
as a user runs it) with faults injected at random at every port, then the promise checked request by request.

Faults: S3, MongoDB and DynamoDB errors before a call, crashes after one (between the steps of an image), queue
sends that fail or repeat (duplicate deliveries), redeliveries that overlap (a short visibility timeout beside
slow sources), malformed messages and messages for no request mixed into the batches, slow, failing, resetting,
trickling and dead sources, and a webhook receiver that fails for a while.

Checks: every request terminal before its deadline; succeeded + failed == total, equal to MongoDB's per-image
states; every failure with a code and a message; exactly one verified webhook per request, whose counts equal
the status; the output CSV whole; nothing left in the dead-letter queue.

CHAOS_IMAGES (default 2000), CHAOS_REQUESTS (10), CHAOS_SEED (random; printed, and reproduces the schedule of
faults and sources), CHAOS_FAULT_RATE (0.03 per call)."""

from __future__ import annotations

import base64
import csv
import io
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from pymongo import MongoClient

from localcloud.peers import WebhookReceiver
from localcloud.servers import free_port, wait_for_port
from tests.chaos.sources import ChaosSources, pick_kind
from tests.integration.test_api_handlers import HEADER, multipart

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"chaos-suite-signing-key-01234567").decode()
TENANTS = ("tenant-a", "tenant-b", "tenant-c")
FINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"}
RECONCILE_S = 3
URLS_PER_ROW = 2


def setting(name: str, default: int | float) -> Any:
    return type(default)(os.environ.get(name, default))


def deadline_s() -> int:
    """Each request's deadline: generous for the size, so reaching it says the pipeline lost or stalled work."""
    return 300 + setting("CHAOS_IMAGES", 2000) // 4


@pytest.fixture(scope="module")
def seed() -> int:
    value = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"\nCHAOS_SEED={value} (set it to reproduce this run)")
    return value


@pytest.fixture(scope="module")
def sources(seed: int) -> Iterator[ChaosSources]:
    with ChaosSources(seed) as server:
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, fail_first=15) as server:  # fails for a while, then recovers
        yield server


@pytest.fixture(scope="module")
def cloud(seed: int, sources: ChaosSources, receiver: WebhookReceiver) -> Iterator[dict[str, str]]:
    # Kept after the run (its log above all), named by the seed that reproduces it.
    state = ROOT / ".local" / f"chaos-{seed}"
    state.mkdir(parents=True, exist_ok=True)
    ports = {"gateway": free_port(), "aws": free_port(), "mongo": free_port()}
    environment = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}",
        "GATEWAY_PORT": str(ports["gateway"]),
        "AWS_PORT": str(ports["aws"]),
        "MONGO_PORT": str(ports["mongo"]),
        "LOCAL_STATE_DIR": str(state),
        "API_KEYS": ",".join(f"{tenant}-key:1000:1000" for tenant in TENANTS),
        "THROTTLE_RATE": "1000",
        "THROTTLE_BURST": "1000",
        "WEBHOOK_SECRET": SECRET,
        "OUTBOUND_ALLOWLIST": f"{sources.origin},{sources.dead_origin},{receiver.origin}",
        "OUTBOUND_TOTAL_TIMEOUT": "3",
        "OUTBOUND_CONNECT_TIMEOUT": "1",
        "LOCAL_VISIBILITY_TIMEOUT": "6",  # slow sources outlast it sometimes: overlapping redeliveries
        "LOCAL_RECONCILE_SECONDS": str(RECONCILE_S),
        "STALL_AFTER_SECONDS": "45",
        "REQUEST_DEADLINE_SECONDS": str(deadline_s()),
        "WEBHOOK_ATTEMPTS": "2",
        "WEBHOOK_FIRST_DELAY": "0.2",
        "IPS_ADAPTER_HOOK": "tests.chaos.faults:inject",
        "CHAOS_SEED": str(seed),
        "CHAOS_FAULT_RATE": str(setting("CHAOS_FAULT_RATE", 0.03)),
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
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
    print(f"chaos: the local cloud's state and log are in {state}")
    try:
        wait_for_port(ports["gateway"], process, timeout=120)
        yield {
            "url": f"http://127.0.0.1:{ports['gateway']}",
            "aws": f"http://127.0.0.1:{ports['aws']}",
            "mongo": f"mongodb://127.0.0.1:{ports['mongo']}/?directConnection=true",
            "log": str(log),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def with_retries(call, what: str, attempts: int = 30) -> requests.Response:
    """The API under chaos answers 500 now and then (its ports fail too): a client retries."""
    for _ in range(attempts):
        try:
            response = call()
        except requests.RequestException:
            time.sleep(0.5)
            continue
        if response.status_code < 500:
            return response
        time.sleep(0.5)
    raise AssertionError(f"{what} kept failing")


def plan_requests(seed: int, sources: ChaosSources, images: int, count: int) -> list[tuple[str, str]]:
    """(tenant, csv) per request: `images` URLs over `count` requests, two URLs a row."""
    rng = random.Random(seed)
    plans, number = [], 0
    for index in range(count):
        share = images // count + (1 if index < images % count else 0)
        rows = []
        for row in range(1, (share + URLS_PER_ROW - 1) // URLS_PER_ROW + 1):
            urls = []
            for _ in range(min(URLS_PER_ROW, share - (row - 1) * URLS_PER_ROW)):
                urls.append(sources.url(pick_kind(rng), number))
                number += 1
            rows.append(f'{row},Product {index}-{row},"{",".join(urls)}"\n')
        plans.append((TENANTS[index % len(TENANTS)], HEADER + "".join(rows)))
    return plans


def poison(aws: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=aws)
    queue = sqs.get_queue_url(QueueName="ips-images")["QueueUrl"]
    bodies = ["{not json", "[]", '{"requestId":"x","row":"two","index":0,"url":"u"}']
    bodies += ['{"requestId":"no-such-request","row":2,"index":0,"url":"http://127.0.0.1:9/x.png"}'] * 2
    for body in bodies * 4:
        sqs.send_message(QueueUrl=queue, MessageBody=body)


def test_every_request_ends_with_its_counts_its_csv_and_one_webhook(
    seed: int, sources: ChaosSources, receiver: WebhookReceiver, cloud: dict[str, str]
) -> None:
    images, count = setting("CHAOS_IMAGES", 2000), setting("CHAOS_REQUESTS", 10)
    started = time.monotonic()
    accepted: dict[str, str] = {}  # request id -> tenant
    for number, (tenant, text) in enumerate(plan_requests(seed, sources, images, count)):
        body, headers = multipart(text, receiver.url)
        headers["x-api-key"] = f"{tenant}-key"
        response = with_retries(
            lambda body=body, headers=headers: requests.post(
                f"{cloud['url']}/api/v1/upload", data=body, headers=headers, timeout=60
            ),
            "upload",
        )
        assert response.status_code == 202, response.text
        accepted[response.json()["requestId"]] = tenant
        if number == 1:
            poison(cloud["aws"])  # malformed messages mixed into the first requests' batches

    # Every request must end by its deadline (the reconciler ends what is left then): wait a little past it.
    statuses = wait_for_the_end(cloud, accepted, timeout=deadline_s() + 4 * RECONCILE_S + 60)
    deliveries = wait_for_webhooks(receiver, accepted, timeout=120)
    elapsed = time.monotonic() - started
    print(f"chaos: {images} images, {count} requests, {len(TENANTS)} tenants ended in {elapsed:.0f} s")
    print("outcomes:", dict(Counter(s["status"] for s in statuses.values())))

    database = MongoClient(cloud["mongo"], tz_aware=True)["ips"]
    s3 = boto3.client("s3", endpoint_url=cloud["aws"])
    failure_codes: Counter[str] = Counter()
    for request_id, status in statuses.items():
        document = database["requests"].find_one({"_id": request_id})
        assert document is not None
        # Terminal before its deadline (within one reconciler period: that is when it is looked at).
        assert document["completedAt"] <= document["deadlineAt"] + timedelta(seconds=RECONCILE_S + 5), request_id
        products = list(database["products"].find({"requestId": request_id}).sort("row", 1))
        states = [image for product in products for image in product["images"]]
        if status["status"] == "FAILED":
            assert status["error"]["code"] and status["error"]["message"], status["error"]
        else:
            assert status["succeeded"] + status["failed"] == status["total"] == len(states), request_id
            succeeded = sum(image["status"] == "SUCCEEDED" for image in states)
            assert (status["succeeded"], status["failed"]) == (succeeded, len(states) - succeeded), request_id
            for image in states:
                assert image["status"] in ("SUCCEEDED", "FAILED"), (request_id, image)
                if image["status"] == "FAILED":
                    assert image.get("error_code") and image.get("error_message"), image
                    failure_codes[image["error_code"]] += 1
            assert_output_csv_whole(s3, request_id, products)
        [delivery] = deliveries[request_id]
        data = delivery["payload"]["data"]
        assert (data["status"], data["total"], data["succeeded"], data["failed"]) == (
            status["status"],
            status["total"],
            status["succeeded"],
            status["failed"],
        ), request_id
    print("image failures by code:", dict(failure_codes))
    sqs = boto3.client("sqs", endpoint_url=cloud["aws"])
    dead = sqs.get_queue_url(QueueName="ips-images-dlq")["QueueUrl"]
    time.sleep(RECONCILE_S + 1)
    attributes = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", "the reconciler drains the DLQ"


def wait_for_the_end(cloud: dict[str, str], accepted: dict[str, str], timeout: float) -> dict[str, dict]:
    statuses: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request_id, tenant in accepted.items():
            if request_id in statuses:
                continue
            response = with_retries(
                lambda request_id=request_id, tenant=tenant: requests.get(
                    f"{cloud['url']}/api/v1/status/{request_id}",
                    params={"limit": 1},
                    headers={"x-api-key": f"{tenant}-key"},
                    timeout=30,
                ),
                "status",
            )
            status = response.json()
            if status["status"] in FINAL:
                statuses[request_id] = status
        if len(statuses) == len(accepted):
            return statuses
        time.sleep(2)
    pending = {rid: "not final" for rid in accepted if rid not in statuses}
    print(Path(cloud["log"]).read_text(errors="replace")[-4000:])
    raise AssertionError(f"requests that did not end in {timeout:.0f} s: {pending}")


def wait_for_webhooks(receiver: WebhookReceiver, accepted: dict[str, str], timeout: float) -> dict[str, list]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = {delivery["id"] for delivery in receiver.deliveries}
        if all(f"msg_{request_id}" in ids for request_id in accepted):
            break
        time.sleep(1)
    time.sleep(2 * RECONCILE_S + 1)  # rounds that might (wrongly) send again
    by_request: dict[str, list] = {request_id: [] for request_id in accepted}
    for delivery in receiver.deliveries:
        by_request.setdefault(delivery["id"].removeprefix("msg_"), []).append(delivery)
    counts = {request_id: len(found) for request_id, found in by_request.items()}
    assert set(counts.values()) == {1}, f"webhooks per request: {counts}"
    return by_request


def assert_output_csv_whole(s3: Any, request_id: str, products: list[dict]) -> None:
    data = s3.get_object(Bucket="ips-processed", Key=f"{request_id}/output.csv")["Body"].read().decode()
    rows = list(csv.reader(io.StringIO(data)))
    assert rows[0][-1] == "Output Image Urls"
    assert len(rows) - 1 == len(products), request_id
    for row, product in zip(rows[1:], products, strict=True):
        assert row[0] == product["serialNumber"]
        outputs = row[3].split(",")
        assert len(outputs) == len(product["inputImageUrls"])
        for output, image in zip(outputs, product["images"], strict=True):
            assert bool(output) == (image["status"] == "SUCCEEDED"), (request_id, row, image)
            if output:
                assert output == image["output_url"]
