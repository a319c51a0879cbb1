"""The chaos suite (`make chaos`): many requests from several tenants through the local cloud (a child process,
as a user runs it) with faults injected at random at every port, then the promise checked request by request.

Faults: S3, MongoDB and DynamoDB errors before a call (the chunks' progress too), crashes after one (between the
steps of an image or of a chunk's expansion), sends to the images and chunks queues that fail or repeat
(duplicate deliveries), queue depths that cannot be read, redeliveries that overlap (a short visibility timeout beside
slow sources), malformed messages and messages for no request mixed into the batches, slow, failing, resetting,
trickling and dead sources, webhook receivers that fail for a while, one tenant's receiver that never answers,
and a MongoDB outage longer than the queues' retries (every call of every MongoDB adapter refused for
CHAOS_OUTAGE_SECONDS, after the uploads were accepted).

Checks: every request terminal before its deadline (moved by the outage); succeeded + failed == total, equal to
MongoDB's per-image states; every failure with a code and a message, and none of them DEAD_LETTERED or
DEADLINE_EXCEEDED (the outage paused the work, it threw none away); exactly one verified webhook per request of
every tenant but the silent one, whose counts equal the status; the silent tenant's webhooks within their cap,
the status saying so; the output CSV whole; nothing left in the dead-letter queues.

CHAOS_IMAGES (default 2000), CHAOS_REQUESTS (10), CHAOS_SEED (random; printed, and reproduces the schedule of
faults and sources), CHAOS_FAULT_RATE (0.03 per call), CHAOS_OUTAGE_SECONDS (90; 0: none)."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import os
import random
import shutil
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

from ips.completion.tenant_secrets import derive_secret
from localcloud.gateway import api_key_id
from localcloud.peers import WebhookReceiver
from localcloud.servers import free_port, wait_for_port
from tests.chaos.sources import ChaosSources, pick_kind
from tests.integration.test_api_handlers import HEADER, multipart

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"chaos-suite-signing-key-01234567").decode()
TENANTS = ("tenant-a", "tenant-b", "tenant-c", "tenant-d")
SILENT = "tenant-d"  # its receiver accepts every delivery and never answers
FINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"}
RECONCILE_S = 3
VISIBILITY_S, RECEIVES = 10, 5  # the local cloud's visibility timeout here, the queues' maxReceiveCount
WEBHOOK_ATTEMPTS = 10
POLL_S = 5  # between rounds of status reads (each read is a function invocation on the same two cores)
URLS_PER_ROW = 2


def setting(name: str, default: int | float) -> Any:
    return type(default)(os.environ.get(name, default))


def deadline_s() -> int:
    """Each request's deadline: generous for the size even on a loaded machine (about 2 images a second), so
    reaching it says the pipeline lost or stalled work."""
    return 600 + setting("CHAOS_IMAGES", 2000) // 2


@pytest.fixture(scope="module")
def seed() -> int:
    value = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"\nCHAOS_SEED={value} (set it to reproduce this run)")
    return value


@pytest.fixture(scope="module")
def sources(seed: int) -> Iterator[ChaosSources]:
    with ChaosSources(seed) as server:
        yield server


def api_key(tenant: str) -> str:
    return f"{tenant}-key"


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, WebhookReceiver]]:
    """Each tenant's receiver, verifying with that tenant's own secret (generation 0) and failing its first
    deliveries for a while before it recovers; the silent tenant's never answers."""
    with contextlib.ExitStack() as stack:
        yield {
            tenant: stack.enter_context(
                WebhookReceiver(
                    derive_secret(SECRET, api_key_id(api_key(tenant)), 0), fail_first=5, silent=tenant == SILENT
                )
            )
            for tenant in TENANTS
        }


def outage_s() -> int:
    """Longer than the queues' retries (VISIBILITY_S x RECEIVES), so work reaches the dead-letter queues."""
    return setting("CHAOS_OUTAGE_SECONDS", 90)


@pytest.fixture(scope="module")
def cloud(seed: int, sources: ChaosSources, receivers: dict[str, WebhookReceiver]) -> Iterator[dict[str, str]]:
    # Kept after the run (its log above all), named by the seed that reproduces it.
    state = ROOT / ".local" / f"chaos-{seed}"
    shutil.rmtree(state, ignore_errors=True)  # a replay starts from nothing, as the first run did
    state.mkdir(parents=True)
    ports = {"gateway": free_port(), "aws": free_port(), "mongo": free_port()}
    environment = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}",
        "GATEWAY_PORT": str(ports["gateway"]),
        "AWS_PORT": str(ports["aws"]),
        "MONGO_PORT": str(ports["mongo"]),
        "LOCAL_STATE_DIR": str(state),
        "API_KEYS": ",".join(f"{api_key(tenant)}:1000:1000" for tenant in TENANTS),
        "THROTTLE_RATE": "1000",
        "THROTTLE_BURST": "1000",
        "WEBHOOK_SECRET": SECRET,
        "OUTBOUND_ALLOWLIST": ",".join(
            [sources.origin, sources.dead_origin, *(receiver.origin for receiver in receivers.values())]
        ),
        "OUTBOUND_TOTAL_TIMEOUT": "3",
        "OUTBOUND_CONNECT_TIMEOUT": "1",
        # Retries come back after 10 s (not 6 min). A batch that outlasts it (slow sources, a loaded machine) is
        # delivered again while it runs: overlapping deliveries. Much shorter, and a batch of chunks, expanded one
        # after another, outlasted it on a loaded machine every time: each was expanded two or three times over.
        "LOCAL_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
        "CHUNK_IMAGES": "50",  # quick to expand, and more of them to fault
        "LOCAL_RECONCILE_SECONDS": str(RECONCILE_S),
        "STALL_AFTER_SECONDS": "45",
        "REQUEST_DEADLINE_SECONDS": str(deadline_s()),
        # Every receiver fails its first 5 deliveries: each request's attempts, and its tenant's receiver's
        # pauses, wait 0.2 s, 0.8 s, 3.2 s, ... (x4) between them; the silent one's costs 2 s an attempt.
        "WEBHOOK_ATTEMPTS": str(WEBHOOK_ATTEMPTS),
        "WEBHOOK_FIRST_DELAY": "0.2",
        "WEBHOOK_TIMEOUT_SECONDS": "2",
        "WEBHOOK_LEASE_SECONDS": "15",  # a sender that crashed holding the claim is replaced after this
        "CHAOS_OUTAGE": str(state / "mongodb-down"),
        "IPS_ADAPTER_HOOK": "tests.chaos.faults:inject",
        # The faults' own variables: no settings model reads them, so only these names reach the functions.
        "LOCAL_PASSTHROUGH": "CHAOS_SEED,CHAOS_FAULT_RATE,CHAOS_COUNTERS,CHAOS_OUTAGE",
        "CHAOS_SEED": str(seed),
        "CHAOS_COUNTERS": str(state / "chaos-counters"),
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
            "outage": str(state / "mongodb-down"),
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
    seed: int, sources: ChaosSources, receivers: dict[str, WebhookReceiver], cloud: dict[str, str]
) -> None:
    images, count = setting("CHAOS_IMAGES", 2000), setting("CHAOS_REQUESTS", 10)
    started = time.monotonic()
    accepted: dict[str, str] = {}  # request id -> tenant
    for number, (tenant, text) in enumerate(plan_requests(seed, sources, images, count)):
        # The request's number in the webhook URL's path: what names it to the faults (tests/chaos/faults.py).
        body, headers = multipart(text, f"{receivers[tenant].url}/{number}")
        headers["x-api-key"] = api_key(tenant)
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

    if outage_s():
        time.sleep(15)  # the work is under way, then MongoDB goes down for longer than the queues' retries
        assert outage_s() > VISIBILITY_S * RECEIVES
        flag = Path(cloud["outage"])
        flag.touch()
        print(f"chaos: MongoDB down for {outage_s()} s")
        time.sleep(outage_s())  # no status read meanwhile: the API answers 500 while its store is down
        flag.unlink()

    # Every request must end by its deadline (the reconciler ends what is left then, the outage's time added):
    # wait a little past it.
    statuses = wait_for_the_end(cloud, accepted, timeout=deadline_s() + outage_s() + 4 * RECONCILE_S + 60)
    deliveries = wait_for_webhooks(receivers, accepted, timeout=300)
    elapsed = time.monotonic() - started
    print(f"chaos: {images} images, {count} requests, {len(TENANTS)} tenants ended in {elapsed:.0f} s")
    print("outcomes:", dict(Counter(s["status"] for s in statuses.values())))

    database = MongoClient(cloud["mongo"], tz_aware=True)["ips"]
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
            # A fresh link: the one read when the request ended may have expired by now (15 minutes).
            assert_output_csv_whole(read_status(cloud, request_id, accepted[request_id]), products)
        if accepted[request_id] == SILENT:
            assert_capped(read_status(cloud, request_id, SILENT)["webhook"])
            continue
        [delivery] = deliveries[request_id]
        data = delivery["payload"]["data"]
        assert (data["status"], data["total"], data["succeeded"], data["failed"]) == (
            status["status"],
            status["total"],
            status["succeeded"],
            status["failed"],
        ), request_id
    print("image failures by code:", dict(failure_codes))
    # The outage paused the work: nothing was thrown away for it (dead letters went back, deadlines moved).
    assert not {"DEAD_LETTERED", "DEADLINE_EXCEEDED"} & set(failure_codes), failure_codes
    silent = receivers[SILENT]
    silent_requests = sum(tenant == SILENT for tenant in accepted.values())
    print(f"chaos: the silent receiver was tried {silent.attempts} times for {silent_requests} requests")
    assert silent.attempts <= WEBHOOK_ATTEMPTS * silent_requests
    sqs = boto3.client("sqs", endpoint_url=cloud["aws"])
    time.sleep(RECONCILE_S + 1)
    for name in ("ips-images-dlq", "ips-chunks-dlq", "ips-webhooks-dlq"):
        dead = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", f"the reconciler drains {name}"


def read_status(cloud: dict[str, str], request_id: str, tenant: str) -> dict[str, Any]:
    response = with_retries(
        lambda: requests.get(
            f"{cloud['url']}/api/v1/status/{request_id}",
            params={"limit": 1},
            headers={"x-api-key": api_key(tenant)},
            timeout=30,
        ),
        "status",
    )
    return response.json()


def wait_for_the_end(cloud: dict[str, str], accepted: dict[str, str], timeout: float) -> dict[str, dict]:
    statuses: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request_id, tenant in accepted.items():
            if request_id in statuses:
                continue
            status = read_status(cloud, request_id, tenant)
            if status["status"] in FINAL:
                statuses[request_id] = status
        if len(statuses) == len(accepted):
            return statuses
        time.sleep(POLL_S)
    pending = {rid: "not final" for rid in accepted if rid not in statuses}
    print(Path(cloud["log"]).read_text(errors="replace")[-4000:])
    raise AssertionError(f"requests that did not end in {timeout:.0f} s: {pending}")


def wait_for_webhooks(
    receivers: dict[str, WebhookReceiver], accepted: dict[str, str], timeout: float
) -> dict[str, list]:
    """Each request's verified deliveries, at its own tenant's receiver (signed with that tenant's secret); none
    for the silent tenant's, whose receiver never answers."""

    def delivered(request_id: str) -> list[dict]:
        found = receivers[accepted[request_id]].deliveries
        return [delivery for delivery in found if delivery["id"] == f"msg_{request_id}"]

    answered = [request_id for request_id, tenant in accepted.items() if tenant != SILENT]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(delivered(request_id) for request_id in answered):
        time.sleep(1)
    time.sleep(2 * RECONCILE_S + 1)  # rounds that might (wrongly) send again
    by_request = {request_id: delivered(request_id) for request_id in answered}
    counts = {request_id: len(found) for request_id, found in by_request.items()}
    assert set(counts.values()) == {1}, f"webhooks per request: {counts}"
    rejected = {tenant: receiver.rejected for tenant, receiver in receivers.items() if receiver.rejected}
    assert not rejected, f"deliveries that did not verify with their tenant's secret: {rejected}"
    everything = sum(len(receiver.deliveries) for receiver in receivers.values())
    assert everything == len(answered), "a webhook for no request of the tenant, or twice"
    return by_request


def assert_capped(webhook: dict[str, Any] | None) -> None:
    """The silent tenant's webhook: never delivered, within its cap of attempts, each one timed out, and the
    status saying what comes next (or that it was given up)."""
    if webhook is None:  # not attempted yet: its receiver's pause held it back
        return
    assert not webhook["delivered"] and webhook["attempts"] <= WEBHOOK_ATTEMPTS, webhook
    assert webhook["lastError"] is None or webhook["lastError"].startswith("TIMEOUT"), webhook
    assert webhook["gaveUp"] or webhook["nextAttemptAt"], webhook


def assert_output_csv_whole(status: dict[str, Any], products: list[dict]) -> None:
    """Read as a client reads it: through the status's presigned link (the CSV is in the private bucket)."""
    request_id = status["requestId"]
    answer = requests.get(status["outputCsvUrl"], timeout=30)
    assert answer.status_code == 200, (request_id, answer.status_code)
    data = answer.content.decode()
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
