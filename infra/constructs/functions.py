"""The topology's functions: python3.12 on x86_64, the two layers, one role and one log group each, X-Ray on.

A function's environment is the variables its settings model reads (ips_runtime.settings.FUNCTIONS), picked from
what the stack knows, and powertools' own (ips_runtime.settings.function_environment, which the local cloud's
execution environments are given too): the model is the one list of them. A function starts with no permission
but writing its own logs and traces: each concern's construct adds the grants of infra/permissions.py for its
resources."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, AssetHashType, Duration, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.layers import BuiltLayer
from infra.topology import Topology
from ips_runtime.settings import FUNCTIONS, function_environment

ROOT = Path(__file__).resolve().parent.parent.parent
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
NOT_PACKAGED = ["**/__pycache__", "**/*.pyc"]
# The use cases' in-memory fakes are test code: the domain layer ships without them (nothing deployed imports one:
# tests/unit/test_layering.py).
DOMAIN_LAYER_EXCLUDED = [*NOT_PACKAGED, "**/fakes.py"]


def stack_environment(function: str, available: dict[str, str]) -> dict[str, str]:
    """The function's environment of what the stack knows; a variable it must have that the stack names no value
    for is an error at synth (the function could not start)."""
    missing = [name for name, required in FUNCTIONS[function].variables().items() if required and name not in available]
    if missing:
        raise KeyError(f"the {function} function's settings need {missing}: the stack names no value for them")
    return function_environment(function, available)


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topology: Topology,
        dependencies: BuiltLayer,
        available: dict[str, str],
        log_retention: logs.RetentionDays,
        reserve_concurrency: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.domain_layer = lambda_.LayerVersion(
            self,
            "DomainLayer",
            code=lambda_.Code.from_asset(str(ROOT / "layers" / "domain"), exclude=DOMAIN_LAYER_EXCLUDED),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="the domain, its adapters and the functions' wiring (ips, ips_adapters, ips_runtime)",
        )
        self.dependencies_layer = lambda_.LayerVersion(
            self,
            "DependenciesLayer",
            code=lambda_.Code.from_asset(
                str(dependencies.path),
                exclude=["layer.json"],
                # hashed once when built: a second synth does not read the whole layer again
                asset_hash=dependencies.content_hash,
                asset_hash_type=AssetHashType.CUSTOM,
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="layers/requirements.txt for python3.12 x86_64 (powertools, pillow, pymongo, pydantic)",
        )
        self.by_name: dict[str, lambda_.Function] = {}
        for spec in topology.functions:
            title = spec.name.capitalize()
            log_group = logs.LogGroup(self, f"{title}Logs", retention=log_retention)
            role = iam.Role(
                self,
                f"{title}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"The {spec.name} function: its own logs and traces, and its grants only",
            )
            log_group.grant_write(role)
            function = lambda_.Function(
                self,
                title,
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                code=lambda_.Code.from_asset(str(ROOT / spec.code), exclude=NOT_PACKAGED),
                handler=spec.handler,
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_s),
                # Off: the event sources' MaximumConcurrency still caps the queue consumers (pipeline.py).
                reserved_concurrent_executions=spec.reserved_concurrency if reserve_concurrency else None,
                layers=[self.dependencies_layer, self.domain_layer],
                environment=stack_environment(spec.name, available),
                role=role,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
                description=spec.description,
            )
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="Only actions without resource-level permissions: X-Ray's PutTraceSegments and "
                    "PutTelemetryRecords, and for the stream consumer dynamodb:ListStreams (its event source).",
                )
            )
            Validations.of(function).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-L1",
                    reason="python3.12 on purpose: the dependencies layer is built for CPython 3.12 (infra/layers.py).",
                )
            )
            self.by_name[spec.name] = function

    def __getitem__(self, name: str) -> lambda_.Function:
        return self.by_name[name]

    def items(self) -> list[tuple[str, lambda_.Function]]:
        return list(self.by_name.items())
