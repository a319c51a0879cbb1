"""Compose the local cloud: emulators, resources from the topology, the functions, the gateway, the runners."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3

from infra.topology import TOPOLOGY, Topology
from ips_runtime.env_settings import SettingsError
from ips_runtime.settings import FUNCTIONS, function_environment
from localcloud.dynamodb_local import dynamodb_local
from localcloud.gateway import ASSETS_PREFIX, Gateway, api_key_id
from localcloud.lambda_host import FunctionPool
from localcloud.openapi import merged_openapi
from localcloud.provision import Resources, provision, queues, resource_variables
from localcloud.runners import S3NotificationRunner, SqsRunner, StreamRunner, TimerRunner, event_runners
from localcloud.servers import ChildServer, aws_emulator, free_port, mongo_server
from localcloud.settings import KeyImageQuota, LocalCloudConfig

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # No account-based endpoints: the emulators answer on one address.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}
# boto3's service-specific endpoints: every client of DynamoDB and its streams (the functions' and the stream
# runner's) goes to DynamoDB Local, everything else to AWS_ENDPOINT_URL.
DYNAMODB_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
# What every execution environment is given besides its function's own variables (the stack's, in AWS:
# ips_runtime.settings.function_environment), because a local process needs it: what Lambda's runtime sets in every
# function (the interpreter's paths, locale and time zone; the SDK's credentials and region) and the emulators'
# addresses, which stand in for AWS's endpoints. No other variable of the shell reaches a function.
PASSED_THROUGH = (
    "PATH",
    "PYTHONPATH",  # the domain layer and the repository, as the layers are on Lambda's
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    *FAKE_CREDENTIALS,  # or the operator's own, for an emulator of their choice (AWS_ENDPOINT_URL)
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    *DYNAMODB_ENDPOINT_VARIABLES,
)


class LocalCloud:
    def __init__(self, config: LocalCloudConfig, topology: Topology = TOPOLOGY) -> None:
        self.config, self.topology = config, topology
        self.children: list[ChildServer] = []
        self.gateway: Gateway | None = None
        self.runners: list[SqsRunner | StreamRunner | S3NotificationRunner | TimerRunner] = []
        self.resources: Resources | None = None
        self.functions: dict[str, FunctionPool] = {}
        self.changes: list[str] = []  # what provisioning changed, one line each

    def start(self) -> LocalCloud:
        """Refuse bad settings before anything starts (SettingsError, one line per problem), then bring the
        servers up, converge the resources on the topology (`changes` says what that changed), start the
        functions and the runners, and listen."""
        config = self.config
        logs = config.state_dir / "logs"
        try:
            os.environ.update({key: value for key, value in FAKE_CREDENTIALS.items() if key not in os.environ})
            topology = self.topology = configured(self.topology, config)
            # Bound first (its port names the asset URLs and the page's origin), listening only once started: a
            # client that connects earlier is refused, not left waiting while the functions warm up.
            self.gateway = Gateway(
                topology,
                self.functions,
                config.api_keys,
                self._read_asset,
                lambda: merged_openapi(topology),
                port=config.gateway_port,
                rate=config.throttle_rate,
                burst=config.throttle_burst,
            )
            # Each function reads its own settings model from this environment: a bad value is refused here,
            # before any server starts (SettingsError), not by each execution environment's cold start.
            check_functions({**os.environ, **self.function_environment(resource_stand_ins(topology))}, topology)
            aws_url = config.aws_endpoint_url
            starting: list[ChildServer] = []
            if aws_url is None:
                port = config.aws_port or free_port()
                starting.append(aws_emulator(port, logs, config.state_dir / "aws" if config.persist_aws else None))
                aws_url = f"http://127.0.0.1:{port}"
            dynamodb_server = self._dynamodb_server() if config.aws_endpoint_url is None else None
            if dynamodb_server is not None:
                starting.append(dynamodb_server)
            mongo_uri = config.mongodb_uri
            if mongo_uri is None:
                port = config.mongo_port or free_port()
                starting.append(mongo_server(port, config.state_dir / "mongo", logs))
                mongo_uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
            for server in starting:  # all at once: the JVM's start overlaps the others'
                self.children.append(server)
                server.spawn()
            for server in starting:
                server.wait()
            os.environ["AWS_ENDPOINT_URL"] = aws_url
            for name in DYNAMODB_ENDPOINT_VARIABLES:
                if dynamodb_server is not None:
                    os.environ[name] = f"http://127.0.0.1:{dynamodb_server.port}"
                else:
                    os.environ.pop(name, None)
            os.environ["MONGODB_URI"] = mongo_uri
            # The upload page is served by the gateway: its origin (by address or by name) may POST uploads.
            web_origins = [self.gateway.url, f"http://localhost:{self.gateway.port}"]
            self.resources = provision(
                topology,
                boto3.client("s3"),
                boto3.client("sqs"),
                boto3.client("dynamodb"),
                web_origins=web_origins,
                report=self.changes.append,
            )
            os.environ.update(self.function_environment(self.resources.environment()))
            self._start_functions(topology)
            self._start_runners(topology)
            self.gateway.start()
        except BaseException:
            self.stop()
            raise
        return self

    def function_environment(self, resources: Mapping[str, str] | None = None) -> dict[str, str]:
        """The values the local cloud knows for the functions' settings besides the shell's (the same variable
        names the CDK stack sets in AWS): each function is given those its model reads (`execution_environment`).
        `resources`: where the provisioned resources are (the started cloud's, when None)."""
        assert self.gateway is not None
        if resources is None:
            assert self.resources is not None
            resources = self.resources.environment()
        state = self.config.state_dir
        # The topology's settings (JPEG_QUALITY, WEBHOOK_LEASE_SECONDS, ...), unless this environment sets them.
        chosen = {name: os.environ[name] for name in self.topology.environment if name in os.environ}
        interval = self.config.reconcile_interval_s
        return {
            **self.topology.function_environment(),
            **chosen,
            # The reconciler's rate here (a store outage is a gap of more than two of its rounds).
            **({"RECONCILE_INTERVAL_SECONDS": str(interval)} if interval is not None else {}),
            **resources,
            "ASSET_BASE_URL": self.gateway.url + ASSETS_PREFIX.rstrip("/"),
            "WEB_ORIGIN": self.gateway.url,  # the upload page's origin: the API's CORS headers allow it
            "WEBHOOK_SECRET": self.config.webhook_secret or local_webhook_secret(state),
            "TENANT_IMAGE_QUOTAS": tenant_image_quotas(self.config.image_quotas),
            "POWERTOOLS_TRACE_DISABLED": "true",
            # Metrics are CloudWatch EMF lines on stdout in Lambda; locally they would only clutter the console.
            "POWERTOOLS_METRICS_DISABLED": str(self.config.metrics_disabled).lower(),
            "POWERTOOLS_LOG_LEVEL": self.config.log_level,
        }

    def execution_environment(self, function: str, available: Mapping[str, str]) -> dict[str, str]:
        """What the function's execution environments see, of every value `available` holds (the shell's and the
        local cloud's): its own variables, as the stack gives them in AWS, what a local process needs
        (PASSED_THROUGH) and the instruments' variables the configuration names (`passthrough`)."""
        kept = (*PASSED_THROUGH, *self.config.passthrough)
        return {
            **{name: available[name] for name in kept if name in available},
            **function_environment(function, available),
        }

    def _dynamodb_server(self) -> ChildServer:
        """DynamoDB Local, its tables in the state folder when the AWS state persists (in memory otherwise).
        Missing (no `make install`, no Java 17+), it raises DynamoDBLocalMissing, which says how to install it."""
        config = self.config
        folder = config.state_dir / "dynamodb" if config.persist_aws else None
        return dynamodb_local(free_port(), folder, config.state_dir / "logs")

    def _start_functions(self, topology: Topology) -> None:
        """A pool of execution environments per function, one of each warmed (in parallel) before the gateway
        listens; more start as invocations need them."""
        config = self.config
        queue_function = topology.queue_source.function
        for spec in topology.functions:
            most = config.workers if spec.name == queue_function else config.environments
            if spec.reserved_concurrency is not None:
                most = min(most, spec.reserved_concurrency)
            self.functions[spec.name] = FunctionPool(
                spec,
                self.execution_environment(spec.name, os.environ),
                max_environments=most,
                setup=config.environment_setup,
                stdout_path=config.function_stdout,
            )
        with ThreadPoolExecutor(len(self.functions)) as warming:  # list(): the first failure fails the start
            list(warming.map(lambda pool: pool.warm(1), self.functions.values()))

    def _start_runners(self, topology: Topology) -> None:
        assert self.resources is not None
        state = self.config.state_dir if self.config.persist_aws else None
        self.runners = list(
            event_runners(
                topology,
                self.resources,
                self.functions,
                workers=self.config.workers,
                state_dir=state,
                reconcile_interval_s=self.config.reconcile_interval_s,
            )
        )
        for runner in self.runners:
            runner.start()

    def _read_asset(self, key: str) -> tuple[bytes, str, str | None] | None:
        assert self.resources is not None
        s3 = boto3.client("s3")
        try:
            found = s3.get_object(Bucket=self.resources.processed_bucket, Key=key)
        except s3.exceptions.NoSuchKey:
            return None
        return found["Body"].read(), found.get("ContentType", "application/octet-stream"), found.get("CacheControl")

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for runner in self.runners:
            runner.stop()
        for function in self.functions.values():
            function.stop()
        for child in reversed(self.children):
            child.stop()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def configured(topology: Topology, config: LocalCloudConfig) -> Topology:
    """The topology with the local cloud's overrides: every queue's visibility timeout, the buckets' expiry."""
    if config.visibility_timeout_s is not None:
        timeout = config.visibility_timeout_s
        topology = replace(
            topology,
            **{field: replace(queue, visibility_timeout_s=timeout) for field, queue in queues(topology).items()},
        )
    return replace(
        topology,
        uploads_retention_days=config.upload_retention_days or topology.uploads_retention_days,
        processed_retention_days=config.processed_retention_days or topology.processed_retention_days,
    )


def check_functions(environment: Mapping[str, str], topology: Topology) -> None:
    """Every function's settings model read from what it is given of `environment`: SettingsError with one line
    per problem, each naming the functions it stops (a variable several read is one line)."""
    stopped: dict[str, list[str]] = {}
    for spec in topology.functions:
        try:
            FUNCTIONS[spec.name].from_env(function_environment(spec.name, environment))
        except SettingsError as refused:
            for problem in refused.problems:
                stopped.setdefault(problem, []).append(spec.name)
    if stopped:
        raise SettingsError(
            *(
                f"{problem} (the {', '.join(names)} function{'s' * (len(names) > 1)})"
                for problem, names in stopped.items()
            )
        )


def resource_stand_ins(topology: Topology) -> dict[str, str]:
    """Where the resources will be, before they are provisioned: names the functions' settings check can read
    (plain text, set by the local cloud itself, never by the operator)."""
    return {name: f"provisioned-at-start-{name.lower()}" for name in resource_variables(topology)}


def tenant_image_quotas(entries: list[KeyImageQuota]) -> str:
    """IMAGE_QUOTAS entries as the functions read them: JSON by API key id (the tenant; in AWS the stack's
    `tenantImageQuotas` parameter gives the same)."""
    quotas = {api_key_id(entry.key): {"perDay": entry.per_day, "inFlight": entry.in_flight} for entry in entries}
    return json.dumps(quotas)


def local_webhook_secret(state_dir: Path) -> str:
    """A signing secret generated once per state folder, so receivers keep verifying across restarts."""
    path = state_dir / "webhook-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return path.read_text().strip()
