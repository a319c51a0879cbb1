"""Stopping and starting `make up` loses no accepted request: S3, SQS and DynamoDB are kept in the state folder
(with MongoDB), so a request stopped half-way ends after the restart and what was stored is still served, also
when the restart changes settings the resources carry (the queues' visibility timeout, the buckets' expiry)."""

from __future__ import annotations

import io
import time

import boto3
import pytest
import requests
from PIL import Image

from localcloud.servers import free_port
from tests.e2e.conftest import KEYS, Cloud, cloud_environment, start_local_cloud, stop_local_cloud
from tests.e2e.test_local_cloud import HEADER, upload, wait_for_final

FINAL = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED")


def test_a_request_stopped_half_way_ends_after_a_restart(
    image_server, webhook_receiver, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path_factory.mktemp("restarted")
    log = state / "localcloud.log"
    # The same ports both times: stored output URLs name the gateway's.
    gateway_port, aws_port = free_port(), free_port()
    environment = cloud_environment(state, gateway_port, aws_port, image_server, webhook_receiver)
    cloud = Cloud(f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{aws_port}", webhook_receiver, log)

    process = start_local_cloud(environment, log)
    try:
        # The receiver verifies tenant A's own secret (the same after the restart: one master per state folder);
        # set here too, so this test does not depend on the session's `cloud` fixture having run first.
        secret = requests.get(f"{cloud.url}/api/v1/webhook-secret", headers={"x-api-key": KEYS[0]}, timeout=30)
        secret.raise_for_status()
        webhook_receiver.use_secret(secret.json()["secret"])
        done = upload(cloud, HEADER + f"1,Before,{image_server.url}/sk_coffee.png\n").json()
        before = wait_for_final(cloud, done["statusUrl"])
        rows = "".join(f"{n},Item {n},{image_server.url}/d_1mp_life.jpg\n" for n in range(1, 31))
        accepted = upload(cloud, HEADER + rows, webhook=webhook_receiver.url).json()
        halfway = requests.get(f"{cloud.url}{accepted['statusUrl']}", headers={"x-api-key": KEYS[0]}, timeout=30)
        assert halfway.json()["status"] not in FINAL  # stopped mid-request, not after it
    finally:
        stop_local_cloud(process, log)
    assert process.returncode in (0, -15)
    assert list((state / "dynamodb").glob("*.db"))  # DynamoDB Local keeps its tables in the state folder

    # Restarted with other settings: the resources are updated in place (was CreateQueue's QueueNameExists and
    # an exit), each change said in one line, and the state is kept.
    restarted = {**environment, "LOCAL_VISIBILITY_TIMEOUT": "7", "UPLOAD_RETENTION_DAYS": "9"}
    before_restart = log.stat().st_size
    process = start_local_cloud(restarted, log)
    try:
        console = log.read_bytes()[before_restart:].decode()
        changes = [line.split(None, 1)[1] for line in console.splitlines() if line.startswith("Provisioned ")]
        assert changes == [
            "queue ips-images: VisibilityTimeout 5 -> 7",
            "queue ips-chunks: VisibilityTimeout 5 -> 7",
            "queue ips-webhooks: VisibilityTimeout 5 -> 7",
            "bucket ips-uploads: objects expire after 30 days -> 9 days",
        ], console
        sqs = boto3.client("sqs", endpoint_url=cloud.aws_url)
        queue = sqs.get_queue_url(QueueName="ips-images")["QueueUrl"]
        assert sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
            "VisibilityTimeout": "7"
        }
        result = wait_for_final(cloud, accepted["statusUrl"], timeout=300)
        assert (result["status"], result["succeeded"], result["failed"]) == ("COMPLETED", 30, 0)
        assert [d["payload"]["data"]["status"] for d in _deliveries(webhook_receiver, accepted["requestId"])] == [
            "COMPLETED"
        ]
        # What was stored before the restart is still served.
        again = requests.get(f"{cloud.url}{done['statusUrl']}", headers={"x-api-key": KEYS[0]}, timeout=30).json()
        assert again["status"] == before["status"] == "COMPLETED"
        output = requests.get(again["products"][0]["outputImageUrls"][0], timeout=30)
        assert output.status_code == 200
        with Image.open(io.BytesIO(output.content)) as image:
            assert image.format == "JPEG"
    finally:
        stop_local_cloud(process, log)


def _deliveries(receiver, request_id: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [d for d in receiver.deliveries if d["payload"]["data"]["requestId"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
