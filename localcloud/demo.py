"""The main job, end to end on the local cloud: upload the sample CSV, watch it, verify the webhook, fetch
every output, write the output CSV. Exits 0 only when every step checks out."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import requests
from PIL import Image

from localcloud.cloud import LocalCloud, LocalCloudConfig, local_webhook_secret
from localcloud.peers import ImageServer, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "samples" / "products.csv"
SAMPLE_IMAGES = ROOT / "samples" / "images"
IMAGE_PORT = 8765  # the sample CSV's URLs point here
OUTPUT_CSV = ROOT / ".local" / "demo" / "output.csv"
EXPECTED_FAILURES = {"HTTP_STATUS", "NOT_AN_IMAGE", "ADDRESS_REFUSED"}


class DemoFailed(Exception):
    pass


def run_demo(timeout: float = 300) -> int:
    try:
        _run(timeout)
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}")
        return 1
    print("\nDEMO OK")
    return 0


def _run(timeout: float) -> None:
    config = LocalCloudConfig.from_env()
    with ImageServer(SAMPLE_IMAGES, port=IMAGE_PORT) as images:
        # The secret is the local cloud's (kept in its state folder); the receiver needs it before uploading.
        config.state_dir.mkdir(parents=True, exist_ok=True)
        secret = os.environ.get("WEBHOOK_SECRET") or local_webhook_secret(config.state_dir)
        with WebhookReceiver(secret) as receiver:
            # Loopback is refused by the fetcher; these two local origins are let through explicitly.
            os.environ["OUTBOUND_ALLOWLIST"] = f"{images.origin},{receiver.origin}"
            print(f"image server {images.url}  webhook receiver {receiver.url}")
            with LocalCloud(config) as cloud:
                assert cloud.gateway is not None
                _job(cloud.gateway.url, config.api_keys[0].split(":")[0], receiver, timeout)


def _job(api: str, key: str, receiver: WebhookReceiver, timeout: float) -> None:
    session = requests.Session()
    session.headers["x-api-key"] = key
    print(f"\nPOST {api}/api/v1/upload  ({SAMPLE_CSV.relative_to(ROOT)})")
    with SAMPLE_CSV.open("rb") as sample:
        answer = session.post(
            f"{api}/api/v1/upload",
            files={"file": ("products.csv", sample, "text/csv")},
            data={"webhookUrl": receiver.url},
            timeout=30,
        )
    if answer.status_code != 202:
        raise DemoFailed(f"upload answered {answer.status_code}: {answer.text}")
    accepted = answer.json()
    print(f"  202 {accepted}")
    status = _watch(session, f"{api}{accepted['statusUrl']}", timeout)

    deliveries = receiver.wait(1, timeout=60)
    if len(deliveries) != 1:
        raise DemoFailed(f"expected one verified webhook, got {len(deliveries)} (rejected: {receiver.rejected})")
    payload = deliveries[0]["payload"]
    print(f"\nwebhook verified with standardwebhooks: id={deliveries[0]['id']} data={payload['data']}")
    if payload["data"]["status"] != status["status"] or payload["data"]["requestId"] != accepted["requestId"]:
        raise DemoFailed("the webhook disagrees with the status")

    print(f"\nfinal status: {status['status']}  {status['succeeded']} succeeded, {status['failed']} failed")
    failures = set()
    for product in status["products"]:
        for error in product["errors"]:
            failures.add(error["code"])
            print(
                f"  failed  S.No {product['serialNumber']} image {error['index']}: {error['code']} {error['message']}"
            )
    if status["status"] != "COMPLETED_WITH_ERRORS" or failures != EXPECTED_FAILURES:
        raise DemoFailed(f"expected COMPLETED_WITH_ERRORS with {EXPECTED_FAILURES}, got {status['status']} {failures}")

    fetched = 0
    for product in status["products"]:
        for url in filter(None, product["outputImageUrls"]):
            image = session.get(url, timeout=30)
            with Image.open(io.BytesIO(image.content)) as decoded:
                if image.status_code != 200 or decoded.format != "JPEG":
                    raise DemoFailed(f"{url} is not a JPEG ({image.status_code})")
            fetched += 1
    if fetched != status["succeeded"]:
        raise DemoFailed(f"fetched {fetched} outputs for {status['succeeded']} successes")
    print(f"fetched all {fetched} output images: every one is a JPEG")

    output = session.get(status["outputCsvUrl"], timeout=30)
    if output.status_code != 200:
        raise DemoFailed(f"output CSV answered {output.status_code}")
    OUTPUT_CSV.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT_CSV.write_bytes(output.content)
    print(f"output CSV: {OUTPUT_CSV}\n")
    print(output.content.decode("utf-8"))


def _watch(session: requests.Session, url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        status = session.get(url, timeout=30).json()
        progress = (status["status"], status["succeeded"], status["failed"])
        if progress != last:
            print(
                f"  {status['status']:<22} {status['succeeded'] + status['failed']:>3}/{status['total']} done "
                f"({status['succeeded']} ok, {status['failed']} failed)"
            )
            last = progress
        if status["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"):
            return status
        time.sleep(0.5)
    raise DemoFailed(f"the request did not complete within {timeout}s")
