"""Deployment parameters: CDK context (`-c key=value`, cdk.json) first, then `IPS_<KEY>` environment variables,
then safe defaults, so `cdk synth` works with none given. A malformed value fails the synth, naming the key.

What both runtimes share (stage, usage plan, reserved concurrency) stays in the topology: these parameters only
override it for one deployment (`DeploymentConfig.apply`). The rest is AWS-only (secrets, retention, alarms)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

from aws_cdk.aws_logs import RetentionDays
from pydantic import Field, TypeAdapter, field_validator
from pydantic_settings import SettingsConfigDict

from infra.topology import Topology, UsagePlan
from ips_runtime.env_settings import EnvSettings
from ips_runtime.settings import TenantImageLimits

Count = Annotated[int, Field(ge=1)]
# The default cap of images in flight per key, sized from the process function's concurrency: what that many
# containers finish in BACKLOG_HOURS at IMAGES_PER_CONTAINER_S (docs/deployment.md, *What it costs*: 0.25 s billed
# per 4 MP JPEG with its download), so the work one key may have queued is bounded by time, not by a fixed count. At the
# default 20: 1,728,000 (a 1,000,000-image catalogue fits; at 2, 172,800).
IMAGES_PER_CONTAINER_S = 4
BACKLOG_HOURS = 6
TENANT_IMAGE_QUOTAS = TypeAdapter(dict[str, TenantImageLimits])

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION = {
    1: RetentionDays.ONE_DAY,
    3: RetentionDays.THREE_DAYS,
    5: RetentionDays.FIVE_DAYS,
    7: RetentionDays.ONE_WEEK,
    14: RetentionDays.TWO_WEEKS,
    30: RetentionDays.ONE_MONTH,
    60: RetentionDays.TWO_MONTHS,
    90: RetentionDays.THREE_MONTHS,
    120: RetentionDays.FOUR_MONTHS,
    150: RetentionDays.FIVE_MONTHS,
    180: RetentionDays.SIX_MONTHS,
    365: RetentionDays.ONE_YEAR,
    400: RetentionDays.THIRTEEN_MONTHS,
    545: RetentionDays.EIGHTEEN_MONTHS,
    731: RetentionDays.TWO_YEARS,
    1096: RetentionDays.THREE_YEARS,
    1827: RetentionDays.FIVE_YEARS,
    3653: RetentionDays.TEN_YEARS,
}


class DeploymentConfig(EnvSettings):
    """Each field from context key `camelCase` (e.g. `mongodbSecret`) or variable `IPS_SNAKE_CASE`."""

    model_config = SettingsConfigDict(env_prefix="IPS_")

    stage: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,128}$")] | None = None  # the topology's ("v1") when None
    mongodb_secret: str | None = None  # Secrets Manager ARN or name of the Atlas URI; the stack creates one when None
    mongodb_database: str = "ips"
    # iam: MONGODB-AWS, each function's IAM role is an Atlas database user (no password to store or rotate; the
    # secret holds the URI without credentials); uri: the user and password are in the secret's URI.
    mongodb_auth: Literal["iam", "uri"] = "iam"
    throttle_rate: Annotated[float, Field(gt=0)] | None = None  # the default usage plan (per key); the topology's
    throttle_burst: Count | None = None
    quota_per_day: Count | None = None
    stage_throttle_rate: Annotated[float, Field(gt=0)] = 100.0  # all keys together
    stage_throttle_burst: Count = 200
    image_quota_per_day: Count | None = None  # every key's images a day (ips.shared.quotas' default when None)
    images_in_flight: Count | None = None  # every key's images in flight
    tenant_image_quotas: str | None = None  # JSON by API key id: {"<id>": {"perDay": n, "inFlight": m}}
    # Reserved for the process function; size it to MongoDB's connections. 2 to 1,000: the SQS event source's
    # MaximumConcurrency range (1,000 is also the default account concurrency).
    process_concurrency: Annotated[int, Field(ge=2, le=1000)] | None = None
    # Reserve the process and expand functions' concurrency (20 + 5) from the account's. Off for accounts whose
    # quota cannot spare it (new accounts start at 10, and Lambda keeps 100 unreserved): the queues' event
    # sources still cap both at the same numbers (MaximumConcurrency), so MongoDB sees no more connections.
    reserve_concurrency: bool = True
    upload_retention_days: Count | None = None  # input and output CSVs expire; the topology's (30) when None
    processed_retention_days: Count | None = None  # processed images expire; the topology's (365) when None
    log_retention_days: int = 30
    alarm_email: str | None = None  # subscribed to the alarm topic when given

    @classmethod
    def from_context(cls, context: Callable[[str], Any], environ: Mapping[str, str] = os.environ) -> DeploymentConfig:
        given = {name: context(_camel(name)) for name in cls.model_fields}
        return cls.from_env(environ, **{name: value for name, value in given.items() if value not in (None, "")})

    @classmethod
    def variable(cls, field: str) -> str:
        return f"{_camel(field)} (IPS_{field.upper()})"

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION:
            raise ValueError(f"must be one of {sorted(LOG_RETENTION)}")
        return days

    @field_validator("tenant_image_quotas")
    @classmethod
    def _quotas_the_functions_accept(cls, quotas: str | None) -> str | None:
        # The functions read it at cold start (ips_runtime.settings): a malformed one fails the synth instead.
        if quotas is not None:
            TENANT_IMAGE_QUOTAS.validate_json(quotas)
        return quotas

    def quota_environment(self, topology: Topology) -> dict[str, str]:
        """The functions' image-quota variables (ips_runtime.settings.Quotas), where set; the cap of
        images in flight always (sized from the deployed process concurrency unless given)."""
        return {
            name: str(value)
            for name, value in (
                ("IMAGE_QUOTA_PER_DAY", self.image_quota_per_day),
                ("IMAGES_IN_FLIGHT", self.in_flight_cap(topology)),
                ("TENANT_IMAGE_QUOTAS", self.tenant_image_quotas),
            )
            if value is not None
        }

    def in_flight_cap(self, topology: Topology) -> int:
        """`imagesInFlight`, or what the process function's concurrency finishes in BACKLOG_HOURS."""
        if self.images_in_flight is not None:
            return self.images_in_flight
        concurrency = topology.function(topology.queue_source.function).reserved_concurrency or 1
        return concurrency * IMAGES_PER_CONTAINER_S * BACKLOG_HOURS * 3600

    def mongodb_environment(self) -> dict[str, str]:
        return {"MONGODB_DATABASE": self.mongodb_database, "MONGODB_AUTH": self.mongodb_auth}

    @property
    def log_retention(self) -> RetentionDays:
        return LOG_RETENTION[self.log_retention_days]

    def apply(self, topology: Topology) -> Topology:
        """The topology as this deployment runs it."""
        plan = topology.usage_plan
        process = topology.queue_source.function
        return replace(
            topology,
            stage=self.stage or topology.stage,
            uploads_retention_days=topology.uploads_retention_days
            if self.upload_retention_days is None
            else self.upload_retention_days,
            processed_retention_days=topology.processed_retention_days
            if self.processed_retention_days is None
            else self.processed_retention_days,
            usage_plan=UsagePlan(
                rate_per_second=plan.rate_per_second if self.throttle_rate is None else self.throttle_rate,
                burst=plan.burst if self.throttle_burst is None else self.throttle_burst,
                quota_per_day=plan.quota_per_day if self.quota_per_day is None else self.quota_per_day,
            ),
            functions=tuple(
                replace(spec, reserved_concurrency=self.process_concurrency)
                if spec.name == process and self.process_concurrency is not None
                else spec
                for spec in topology.functions
            ),
        )


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)
