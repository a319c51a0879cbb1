"""The main job, end to end on the local cloud, as a user runs it: `ips upload samples/products.csv --wait --out`
(the sample has three bad URLs on purpose, so it must exit 3), then check what it did: the verified webhook,
every output image, the output CSV it wrote. Exits 0 only when every step checks out."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import requests
from PIL import Image

from localcloud.cloud import LocalCloud, LocalCloudConfig
from localcloud.peers import ImageServer, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "samples" / "products.csv"
SAMPLE_IMAGES = ROOT / "samples" / "images"
IMAGE_PORT = 8765  # the sample CSV's URLs point here
OUTPUT_CSV = ROOT / ".local" / "demo" / "output.csv"
EXPECTED_FAILURES = {"HTTP_STATUS", "NOT_AN_IMAGE", "ADDRESS_REFUSED"}
EXIT_COMPLETED_WITH_ERRORS = 3  # the ips command's exit code for a request that ended with failed images


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
    # The receiver verifies with the tenant's own secret, read from the API once the cloud is up.
    with ImageServer(SAMPLE_IMAGES, port=IMAGE_PORT) as images, WebhookReceiver() as receiver:
        # Loopback is refused by the fetcher; these two local origins are let through explicitly.
        os.environ["OUTBOUND_ALLOWLIST"] = f"{images.origin},{receiver.origin}"
        print(f"image server {images.url}  webhook receiver {receiver.url}")
        with LocalCloud(config) as cloud:
            assert cloud.gateway is not None
            _job(cloud.gateway.url, config.api_keys[0].key, receiver, timeout)


def _job(api: str, key: str, receiver: WebhookReceiver, timeout: float) -> None:
    # The receiver verifies with this key's own webhook secret, read from the API (never the master).
    answer = requests.get(f"{api}/api/v1/webhook-secret", headers={"x-api-key": key}, timeout=30)
    if answer.status_code != 200:
        raise DemoFailed(f"webhook secret answered {answer.status_code}: {answer.text}")
    receiver.use_secret(answer.json()["secret"])
    print(f"GET {api}/api/v1/webhook-secret  (the receiver verifies with this key's own secret)")
    # The main job is what a user types: the `ips` command, with the local cloud's URL and key.
    environment = {**os.environ, "IPS_API_URL": api, "IPS_API_KEY": key}
    upload = ["upload", str(SAMPLE_CSV.relative_to(ROOT)), "--webhook", receiver.url, "--wait"]
    upload += ["--out", str(OUTPUT_CSV.relative_to(ROOT)), "--wait-timeout", str(int(timeout)), "--interval", "0.5"]
    code, printed = _ips(upload, environment)
    if code != EXIT_COMPLETED_WITH_ERRORS:
        raise DemoFailed(f"ips upload exited {code}; expected {EXIT_COMPLETED_WITH_ERRORS} (completed with errors)")
    request_id = printed.splitlines()[0].strip()
    code, printed = _ips(["status", request_id, "--json"], environment, echo=False)
    if code != EXIT_COMPLETED_WITH_ERRORS:
        raise DemoFailed(f"ips status exited {code}")
    status = json.loads(printed)

    deliveries = receiver.wait(1, timeout=60)
    if len(deliveries) != 1:
        raise DemoFailed(f"expected one verified webhook, got {len(deliveries)} (rejected: {receiver.rejected})")
    payload = deliveries[0]["payload"]
    print(f"\nwebhook verified with standardwebhooks: id={deliveries[0]['id']} data={payload['data']}")
    if payload["data"]["status"] != status["status"] or payload["data"]["requestId"] != request_id:
        raise DemoFailed("the webhook disagrees with the status")

    failures = {error["code"] for product in status["products"] for error in product["errors"]}
    savings = status["savings"]
    print(
        f"savings: {savings['bytesIn']:,} bytes in -> {savings['bytesOut']:,} bytes out (ratio {savings['ratio']}), "
        f"{status['reused']} reused from earlier requests"
    )
    if status["status"] != "COMPLETED_WITH_ERRORS" or failures != EXPECTED_FAILURES:
        raise DemoFailed(f"expected COMPLETED_WITH_ERRORS with {EXPECTED_FAILURES}, got {status['status']} {failures}")

    fetched = 0
    for product in status["products"]:
        for url in filter(None, product["outputImageUrls"]):
            image = requests.get(url, timeout=30)
            with Image.open(io.BytesIO(image.content)) as decoded:
                if image.status_code != 200 or decoded.format != "JPEG":
                    raise DemoFailed(f"{url} is not a JPEG ({image.status_code})")
            fetched += 1
    if fetched != status["succeeded"]:
        raise DemoFailed(f"fetched {fetched} outputs for {status['succeeded']} successes")
    print(f"fetched all {fetched} output images: every one is a JPEG")

    if not OUTPUT_CSV.exists():
        raise DemoFailed(f"ips upload --out did not write {OUTPUT_CSV}")
    rows = list(csv.reader(io.StringIO(OUTPUT_CSV.read_text(encoding="utf-8"))))
    if rows[0][-1] != "Output Image Urls" or len(rows) != status["totalProducts"] + 1:
        raise DemoFailed(f"{OUTPUT_CSV} is not the output CSV of {status['totalProducts']} products")
    print(f"output CSV: {OUTPUT_CSV}\n")
    print(OUTPUT_CSV.read_text(encoding="utf-8"))


def _ips(arguments: list[str], environment: dict[str, str], *, echo: bool = True) -> tuple[int, str]:
    """Run the `ips` command as a user would (progress on stderr shows as it goes); its code and its stdout."""
    print(f"\n$ ips {' '.join(arguments)}", flush=True)
    command = shutil.which("ips", path=str(Path(sys.executable).parent)) or shutil.which("ips")
    if command is None:
        raise DemoFailed("the ips command is not installed (make install)")
    with subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [command, *arguments], cwd=ROOT, env=environment, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
    return process.returncode, "".join(lines)
