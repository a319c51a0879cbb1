"""Each function's execution environments in the local cloud see the variables its settings model reads, as the
CDK stack gives them in AWS, and what a local process needs: not one environment shared by every function.

The local cloud runs in this process with its real function pools (child processes from the fork server); a set-up
hook records each execution environment's os.environ. Then one request of each route goes through, so every
function is shown to work with only its own variables."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.topology import TOPOLOGY
from ips_runtime.settings import FUNCTIONS, RUNTIME_PREFIX
from localcloud.cloud import PASSED_THROUGH, LocalCloud
from localcloud.peers import WebhookReceiver
from localcloud.servers import free_port
from localcloud.settings import ApiKey, LocalCloudConfig
from tests.integration.environment_probe import PROBE_VARIABLE

KEY = "environments-key"
HEADER = "S. No.,Product Name,Input Image Urls\n"
# Set in the shell the cloud starts from: a setting only the process function reads, one only the webhook and
# secret functions read, and a variable nothing reads.
SHELL = {"IMAGE_MAX_BYTES": "7000000", "WEBHOOK_ATTEMPTS": "4", "UNRELATED_SHELL_VARIABLE": "not for functions"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def cloud(image_server, receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state = tmp_path_factory.mktemp("function-environments")
    probe = state / "probe"
    probe.mkdir()
    saved = dict(os.environ)  # the cloud sets its endpoints and settings here: other tests must not see them
    os.environ.update(
        {**SHELL, PROBE_VARIABLE: str(probe), "OUTBOUND_ALLOWLIST": f"{image_server.origin},{receiver.origin}"}
    )
    for inherited in ("AWS_ENDPOINT_URL", "MONGODB_URI"):
        os.environ.pop(inherited, None)
    config = LocalCloudConfig(
        gateway_port=free_port(),
        aws_port=free_port(),
        state_dir=state,
        api_keys=[ApiKey(KEY, 1000, 1000)],
        workers=2,
        environments=1,
        visibility_timeout_s=5,
        persist_aws=False,
        environment_setup="tests.integration.environment_probe:record",
        passthrough=(PROBE_VARIABLE,),
    )
    try:
        with LocalCloud(config) as started:
            yield started
    finally:
        os.environ.clear()
        os.environ.update(saved)


def environments(cloud: LocalCloud) -> dict[str, list[dict[str, str]]]:
    """What each function's execution environments were given, as they recorded it."""
    probe = Path(cloud.config.state_dir) / "probe"
    found: dict[str, list[dict[str, str]]] = {}
    for path in sorted(probe.glob("*.json")):
        found.setdefault(path.name.split("-")[0], []).append(json.loads(path.read_text()))
    return found


def test_each_function_sees_only_its_own_variables_and_what_a_process_needs(cloud: LocalCloud) -> None:
    recorded = environments(cloud)
    assert set(recorded) == {spec.name for spec in TOPOLOGY.functions}  # one warmed environment each, at least
    for name, seen in recorded.items():
        reads = FUNCTIONS[name].variables()
        for environment in seen:
            unexpected = {
                variable
                for variable in environment
                if variable not in reads and not variable.startswith(RUNTIME_PREFIX) and variable not in PASSED_THROUGH
            }
            assert unexpected == {PROBE_VARIABLE}, name  # the hook's own, which the configuration passes through
            assert {variable for variable, required in reads.items() if required} <= set(environment), name
            assert environment["POWERTOOLS_SERVICE_NAME"] == name  # as the stack names each function
            assert "UNRELATED_SHELL_VARIABLE" not in environment
            assert environment["AWS_ENDPOINT_URL"] == os.environ["AWS_ENDPOINT_URL"]  # the emulator stands in for AWS
    status, process = recorded["status"][0], recorded["process"][0]
    assert process["IMAGE_MAX_BYTES"] == SHELL["IMAGE_MAX_BYTES"] and "IMAGE_MAX_BYTES" not in status
    # The master signing secret only where webhooks are signed or tenants' secrets are derived.
    holders = {name for name, seen in recorded.items() if "WEBHOOK_SECRET" in seen[0]}
    assert holders == {"webhook", "secret"}
    assert recorded["webhook"][0]["WEBHOOK_ATTEMPTS"] == SHELL["WEBHOOK_ATTEMPTS"]
    # Resources: the status function reads the uploads bucket, never the processed one or a queue.
    assert "UPLOADS_BUCKET" in status and not {"PROCESSED_BUCKET", "IMAGES_QUEUE_URL", "CHUNKS_QUEUE_URL"} & set(status)


def wait_for_final(api: str, status_url: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(f"{api}{status_url}", headers={"x-api-key": KEY}, timeout=30)
        assert answer.status_code == 200, answer.text
        if answer.json()["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"):
            return answer.json()
        time.sleep(0.3)
    raise AssertionError(f"{status_url} not final within {timeout}s")


def test_every_function_works_with_only_its_own_variables(
    cloud: LocalCloud, image_server, receiver: WebhookReceiver
) -> None:
    """secret, upload, expand, process, notify, webhook and status on the direct route; ingest on the presigned
    one; the reconciler's round invoked as its schedule would."""
    assert cloud.gateway is not None
    api = cloud.gateway.url
    secret = requests.get(f"{api}/api/v1/webhook-secret", headers={"x-api-key": KEY}, timeout=30)
    assert secret.status_code == 200, secret.text
    receiver.use_secret(secret.json()["secret"])  # deliveries are checked against the tenant's own secret
    direct = requests.post(
        f"{api}/api/v1/upload",
        headers={"x-api-key": KEY},
        files={"file": ("products.csv", (HEADER + f"1,Mug,{image_server.url}/sk_chelsea.png\n").encode(), "text/csv")},
        data={"webhookUrl": receiver.url},
        timeout=30,
    )
    assert direct.status_code == 202, direct.text
    slot = requests.post(f"{api}/api/v1/uploads", headers={"x-api-key": KEY}, json={}, timeout=30)
    assert slot.status_code == 201, slot.text
    presigned = slot.json()
    sent = requests.post(
        presigned["upload"]["url"],
        data=presigned["upload"]["fields"],
        files={"file": ("products.csv", (HEADER + f"1,Cup,{image_server.url}/sk_chelsea.png\n").encode())},
        timeout=60,
    )
    assert sent.status_code in (200, 204), sent.text
    for accepted in (direct.json(), presigned):
        final = wait_for_final(api, accepted["statusUrl"])
        assert (final["status"], final["succeeded"]) == ("COMPLETED", 1), final
    (delivery,) = [
        d for d in receiver.wait(1, timeout=60) if d["payload"]["data"]["requestId"] == direct.json()["requestId"]
    ]
    assert delivery["payload"]["data"]["status"] == "COMPLETED"  # signed with the tenant's secret: verified
    scheduled = {"version": "0", "id": "round", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    cloud.functions[TOPOLOGY.reconcile_schedule.function].invoke(
        {**scheduled, "resources": [], "time": "2026-01-01T00:00:00Z"}
    )
