"""Each function builds only what its use cases use (ips_runtime.roots): the status function answers a real
request from the emulators (the local cloud's moto server, the MongoDB wire server) in a process where Pillow and
requests cannot be imported at all."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.config import Config

from infra.topology import TOPOLOGY
from ips.shared.csv_input import ProductRow
from ips.shared.model import Counts, ImageOutcome, ImageStatus, ImageTask, RequestStatus
from ips.shared.ports import RequestRecord
from localcloud.gateway import api_event, api_key_id, match_route
from localcloud.provision import provision

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "roots-key"

# Run in a fresh interpreter: a meta-path finder refuses Pillow and requests (and anything under them), then the
# status handler is imported, its root built from the environment and the event (stdin) handled.
STATUS_WITHOUT_PILLOW = """
import importlib.abc, json, sys

BLOCKED = ("PIL", "requests")
refused = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            refused.append(name)
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Refuse())
from functions.status.handler import lambda_handler
from localcloud.lambda_host import LambdaContext

answers = [lambda_handler(event, LambdaContext("status", 256, 30)) for event in json.load(sys.stdin)]
loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
print(json.dumps({"answers": answers, "refused": refused, "loaded": loaded}))
"""


def status_event(request_id: str, api_key: str = API_KEY) -> dict[str, object]:
    path = f"/api/v1/status/{request_id}"
    match = match_route(TOPOLOGY.routes, "GET", path)
    assert match is not None
    route, parameters = match
    return api_event(route, path, "", parameters, {"x-api-key": api_key}, b"", api_key=api_key)


def test_the_status_function_serves_a_request_without_pillow_or_requests(
    aws_endpoint: str, dynamodb_local_endpoint: str, mongo_uri: str, monkeypatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topology = dataclasses.replace(
        TOPOLOGY,
        uploads_bucket=f"roots-{suffix}-uploads",
        processed_bucket=f"roots-{suffix}-processed",
        requests_table=f"roots-{suffix}-requests",
        images_queue=dataclasses.replace(
            TOPOLOGY.images_queue, name=f"roots-{suffix}-images", dead_letter_name=f"roots-{suffix}-dlq"
        ),
    )
    clients = {"sqs": boto3.client("sqs", endpoint_url=aws_endpoint)}
    clients["dynamodb"] = boto3.client("dynamodb", endpoint_url=dynamodb_local_endpoint)
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, config=Config(signature_version="s3v4"))
    resources = provision(topology, s3, clients["sqs"], clients["dynamodb"])
    environment = {
        **topology.function_environment(),
        **resources.environment(),
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local_endpoint,
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": f"ips_roots_{suffix}",
        "ASSET_BASE_URL": "http://assets.invalid/assets",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    # A finished request, written through the adapters as the pipeline would write it.
    from ips_runtime.adapters import Adapters

    adapters = Adapters.from_env()
    request_id, tenant = str(uuid.uuid4()), api_key_id(API_KEY)
    created = datetime(2026, 12, 1, 12, tzinfo=UTC)
    adapters.catalog.create(
        RequestRecord(request_id, tenant, RequestStatus.PENDING, created, 1, 1, "http://hooks.invalid/")
    )
    adapters.catalog.add_products(request_id, [ProductRow(2, "7", "Mug", ("http://images.invalid/mug.jpg",))])
    task = ImageTask(request_id, 2, 0, "http://images.invalid/mug.jpg", "salt", tenant)
    done = ImageOutcome(ImageStatus.SUCCEEDED, output_url="http://assets.invalid/assets/x.jpg", input_bytes=900)
    adapters.catalog.record_images([(task, dataclasses.replace(done, output_bytes=300, input_format="JPEG"))])
    adapters.uploads.put(f"{request_id}/output.csv", b"S. No.,Product Name\n", "text/csv")
    adapters.catalog.finalise(request_id, RequestStatus.COMPLETED, Counts(1, 1, 0), f"{request_id}/output.csv", created)
    adapters.catalog.record_webhook(
        request_id, {"delivered": False, "attempts": 3, "last_status": 500, "last_error": "HTTP 500"}
    )

    events = [status_event(request_id), status_event(request_id, "another-key"), status_event(str(uuid.uuid4()))]
    run = subprocess.run(
        [sys.executable, "-c", STATUS_WITHOUT_PILLOW],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'domain' / 'python'}{os.pathsep}{ROOT}"},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [] and result["refused"] == []  # never even tried
    mine, theirs, unknown = result["answers"]
    assert mine["statusCode"] == 200, mine
    status = json.loads(mine["body"])
    assert (status["status"], status["succeeded"], status["failed"]) == ("COMPLETED", 1, 0)
    assert status["products"][0]["outputImageBytes"] == [300]
    assert f"{request_id}/output.csv" in status["outputCsvUrl"] and "X-Amz-Signature" in status["outputCsvUrl"]
    # The stored delivery, mapped to the public contract (never its stored snake_case fields).
    assert status["webhook"] == {
        "delivered": False,
        "attempts": 3,
        "lastStatus": 500,
        "lastError": "HTTP 500",
        "nextAttemptAt": None,
        "gaveUp": False,
    }
    assert theirs["statusCode"] == unknown["statusCode"] == 404


EXPECTED_PORTS = {
    # function -> the adapters its root builds (nothing else is constructed, or imported, in that function)
    "upload": {"uploads", "catalog", "ledger", "chunks", "quotas", "clock", "check_webhook_url"},
    "ingest": {"uploads", "catalog", "ledger", "chunks", "quotas", "clock"},
    # the chunks are the expand function's: the process function no longer reads the CSV
    "expand": {"uploads", "catalog", "queue", "chunks", "chunk_progress"},
    # quotas: a heavy image's work is charged to its tenant's daily quota
    "process": {"fetcher", "processed", "catalog", "ledger", "reuse", "clock", "queue", "quotas"},
    # notify signs nothing: no master secret, no outbound client, only the webhook queue
    "notify": {"catalog", "ledger", "uploads", "clock", "quotas", "webhook_queue"},
    # the only function that signs and sends webhooks
    "webhook": {"catalog", "receivers", "secret_generations", "clock", "webhooks", "uploads", "webhook_queue"},
    "status": {"catalog", "ledger", "uploads"},
    "secret": {"secret_generations", "clock"},
    "reconcile": {
        "catalog",
        "ledger",
        "queue",
        "chunks",
        "chunk_progress",
        "uploads",
        "dead_letters",
        "lease",
        "ingest_failures",
        "rounds",
        "clock",
        "quotas",
        "webhook_queue",
    },
}


def test_each_functions_root_builds_only_the_adapters_its_use_cases_take(mongo_uri: str, monkeypatch) -> None:
    from ips_runtime import roots
    from ips_runtime.adapters import Adapters

    environment = {
        **TOPOLOGY.function_environment(),
        "UPLOADS_BUCKET": "uploads",
        "PROCESSED_BUCKET": "processed",
        "IMAGES_QUEUE_URL": "http://127.0.0.1:1/queue/images",
        "CHUNKS_QUEUE_URL": "http://127.0.0.1:1/queue/chunks",
        "WEBHOOKS_QUEUE_URL": "http://127.0.0.1:1/queue/webhooks",
        "INGEST_FAILURES_QUEUE_URL": "http://127.0.0.1:1/queue/ingest-failures",
        "REQUESTS_TABLE": "requests",
        "DEAD_LETTER_QUEUE_URLS": "http://127.0.0.1:1/queue/images-dlq,http://127.0.0.1:1/queue/chunks-dlq",
        "MONGODB_URI": mongo_uri,  # the upload and process roots create the indexes at their cold start
        "MONGODB_DATABASE": f"ips_roots_{uuid.uuid4().hex[:8]}",
        "ASSET_BASE_URL": "http://assets.invalid/assets",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    every = (
        roots.UPLOAD,
        roots.INGEST,
        roots.EXPAND,
        roots.PROCESS,
        roots.NOTIFY,
        roots.WEBHOOK,
        roots.STATUS,
        roots.SECRET,
        roots.RECONCILE,
    )
    by_name = {root.name: root for root in every}
    assert set(by_name) == {function.name for function in TOPOLOGY.functions}
    for name, root in by_name.items():
        built: list[str] = []

        def record(port: str, adapter: object, built: list[str] = built) -> object:
            built.append(port)
            return adapter

        root.build(Adapters.from_env(record))
        assert set(built) == EXPECTED_PORTS[name], name
