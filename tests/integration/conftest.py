"""Handlers and adapters against moto (mock_aws) and a real MongoDB wire server."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from infra.topology import TOPOLOGY
from ips.completion.tenant_secrets import derive_secret
from localcloud.gateway import api_event, api_key_id, match_route
from localcloud.lambda_host import LocalFunction
from localcloud.peers import WebhookReceiver
from localcloud.provision import Resources, provision
from localcloud.runners import S3NotificationRunner, SqsRunner, StreamRunner, event_runners

if TYPE_CHECKING:
    from ips_runtime.adapters import Adapters

API_KEY = "integration-key"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"integration-tests-signing-key-32b").decode()  # the master
# What API_KEY's tenant verifies its webhooks with (each test has a fresh database: generation 0).
TENANT_SECRET = derive_secret(WEBHOOK_SECRET, api_key_id(API_KEY), 0)


@contextlib.contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """moto's DynamoDB serving one request at a time, as the local cloud's emulator does (AtomicDynamoDB): DynamoDB
    evaluates a condition and applies its write atomically, moto does not (two concurrent `remaining > 1` counts
    can both pass), and the process function counts several images of a batch at once."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoHandler.call_action = original  # type: ignore[method-assign]


@pytest.fixture
def aws() -> Iterator[Resources]:
    with mock_aws(), atomic_dynamodb():
        yield provision(TOPOLOGY, boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb"))


@pytest.fixture
def database_name() -> str:
    return f"ips_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def function_env(
    aws: Resources, mongo_uri: str, database_name: str, image_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The functions' environment, as the local cloud and the CDK stack set it."""
    from ips_runtime.roots import reset_roots

    environment = {
        **TOPOLOGY.function_environment(),
        **aws.environment(),
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": database_name,
        "ASSET_BASE_URL": "http://assets.invalid/assets",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OUTBOUND_ALLOWLIST": image_server.origin,
        "WEBHOOK_FIRST_DELAY": "0.05",
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    reset_roots()
    yield environment
    reset_roots()


@pytest.fixture
def adapters(function_env: dict[str, str]) -> Adapters:
    """Adapters from the functions' environment, for a test to read (or seed) the state they keep."""
    from ips_runtime.adapters import Adapters

    return Adapters.from_env()


@dataclass
class Pipeline:
    """Drives the functions in-process with the local cloud's own event runners, one step at a time."""

    resources: Resources
    functions: dict[str, LocalFunction]

    def api(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: str = "",
        api_key: str = API_KEY,
    ) -> tuple[int, dict[str, Any]]:
        import json

        match = match_route(TOPOLOGY.routes, method, path)
        assert match is not None, f"no route for {method} {path}"
        route, parameters = match
        event = api_event(
            route,
            path,
            query,
            parameters,
            {"x-api-key": api_key, **(headers or {})},
            body,
            api_key=api_key,
            binary_media_types=TOPOLOGY.binary_media_types,
        )
        result = self.functions[route.function].invoke(event)
        return result["statusCode"], json.loads(result["body"])

    def sqs_runner(self) -> SqsRunner:
        """The images queue's."""
        return event_runners(TOPOLOGY, self.resources, self.functions, workers=1, wait_seconds=0)[0]

    def chunk_runner(self) -> SqsRunner:
        """The chunks queue's (the fan-out: each chunk becomes products and image messages)."""
        return event_runners(TOPOLOGY, self.resources, self.functions, workers=1, wait_seconds=0)[4]

    def stream_runner(self) -> StreamRunner:
        return event_runners(TOPOLOGY, self.resources, self.functions, workers=1)[1]

    def s3_runner(self) -> S3NotificationRunner:
        return event_runners(TOPOLOGY, self.resources, self.functions, workers=1)[2]

    def webhook_runner(self) -> SqsRunner:
        """The webhook queue's (each wake-up: at most one signed POST, the next one scheduled)."""
        return event_runners(TOPOLOGY, self.resources, self.functions, workers=1, wait_seconds=0)[5]

    def send_webhooks(self, max_polls: int = 50) -> int:
        """Run the webhook function on the wake-ups the webhook queue holds visible now (a retry's waits out its
        delay); how many polls found one."""
        runner = self.webhook_runner()
        for found in range(max_polls):
            if not runner.poll_once():
                return found
        raise AssertionError("the webhook queue did not drain")

    def webhooks_until(self, done: Callable[[], object], timeout: float = 20) -> None:
        """Run the webhook queue's wake-ups as they come due (retries wait out their delays) until `done()`."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("the webhook deliveries did not get there in time")
            if not self.send_webhooks():
                time.sleep(0.2)

    def notify(self) -> bool:
        """The table's stream to notify (completions, failures), then the webhooks that queued."""
        found = self.stream_runner().poll_once()
        self.send_webhooks()
        return found

    def reconcile(self) -> dict[str, Any]:
        """One reconciler round, as its schedule would run it."""
        return event_runners(TOPOLOGY, self.resources, self.functions, workers=1)[3].fire()

    def drain_queue(self, runner: SqsRunner | None = None, max_polls: int = 200) -> None:
        """Run a queue's function until the queue is empty; without `runner`, the chunks queue, then the images'."""
        for each in [runner] if runner else [self.chunk_runner(), self.sqs_runner()]:
            for _ in range(max_polls):
                if not each.poll_once():
                    break
            else:
                raise AssertionError("the queue did not drain")

    def queued(self, url: str | None = None) -> int:
        """Every message the queue holds: waiting, in flight or delayed."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=url or self.resources.queue_url, AttributeNames=names
        )["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch, function_env: dict[str, str]) -> Iterator[WebhookReceiver]:
    """A client's webhook endpoint, verifying signatures; its origin is let through the outbound checks."""
    from ips_runtime.roots import reset_roots

    with WebhookReceiver(TENANT_SECRET) as receiver:
        monkeypatch.setenv("OUTBOUND_ALLOWLIST", f"{function_env['OUTBOUND_ALLOWLIST']},{receiver.origin}")
        reset_roots()
        yield receiver


@pytest.fixture
def pipeline(aws: Resources, function_env: dict[str, str]) -> Pipeline:
    return Pipeline(aws, {spec.name: LocalFunction(spec) for spec in TOPOLOGY.functions})
