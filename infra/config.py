"""Deployment parameters: CDK context (`-c key=value`, cdk.json) first, then `IPS_<KEY>` environment variables,
then safe defaults, so `cdk synth` works with none given.

What both runtimes share (stage, usage plan, reserved concurrency) stays in the topology: these parameters only
override it for one deployment (`DeploymentConfig.apply`). The rest is AWS-only (secrets, retention, alarms)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from aws_cdk.aws_logs import RetentionDays

from infra.topology import Topology, UsagePlan

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


@dataclass(frozen=True)
class DeploymentConfig:
    stage: str | None = None  # the API stage; the topology's ("v1") when None
    mongodb_secret: str | None = None  # Secrets Manager ARN or name of the Atlas URI; the stack creates one when None
    mongodb_database: str = "ips"
    throttle_rate: float | None = None  # the default usage plan (per key); the topology's when None
    throttle_burst: int | None = None
    quota_per_day: int | None = None
    stage_throttle_rate: float = 100.0  # all keys together
    stage_throttle_burst: int = 200
    image_quota_per_day: int | None = None  # every key's images a day (ips.quotas' default when None)
    images_in_flight: int | None = None  # every key's images in flight
    tenant_image_quotas: str | None = None  # JSON by API key id: {"<id>": {"perDay": n, "inFlight": m}}
    process_concurrency: int | None = None  # reserved for the process function; size it to MongoDB's connections
    upload_retention_days: int | None = None  # input and output CSVs expire; the topology's (30) when None
    processed_retention_days: int | None = None  # processed images expire; the topology's (365) when None
    log_retention_days: int = 30
    alarm_email: str | None = None  # subscribed to the alarm topic when given

    @classmethod
    def from_context(cls, context: Callable[[str], Any], environ: Mapping[str, str] = os.environ) -> DeploymentConfig:
        """Each field from context key `camelCase` (e.g. `mongodbSecret`) or variable `IPS_SNAKE_CASE`."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            key = _camel(spec.name)
            raw = context(key)
            if raw is None:
                raw = environ.get(f"IPS_{spec.name.upper()}")
            if raw is not None and raw != "":
                values[spec.name] = _convert(spec.name, str(spec.type), raw)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.log_retention_days not in LOG_RETENTION:
            raise ValueError(f"logRetentionDays must be one of {sorted(LOG_RETENTION)}, not {self.log_retention_days}")
        for name, days in (
            ("uploadRetentionDays", self.upload_retention_days),
            ("processedRetentionDays", self.processed_retention_days),
        ):
            if days is not None and days < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.stage is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,128}", self.stage):
            raise ValueError(f"stage must be letters, digits or underscores, not {self.stage!r}")
        if self.tenant_image_quotas is not None:
            try:
                quotas = json.loads(self.tenant_image_quotas)
            except json.JSONDecodeError as exc:
                raise ValueError(f"tenantImageQuotas must be JSON: {exc}") from exc
            if not isinstance(quotas, dict) or not all(isinstance(limits, dict) for limits in quotas.values()):
                raise ValueError('tenantImageQuotas must be {"<api key id>": {"perDay": n, "inFlight": m}}')
        if self.process_concurrency is not None and not 2 <= self.process_concurrency <= 1000:
            # The SQS event source's MaximumConcurrency range; 1,000 is also the default account concurrency.
            raise ValueError("processConcurrency must be from 2 (the SQS event source's minimum) to 1000")

    def quota_environment(self) -> dict[str, str]:
        """The functions' image-quota variables (ips_runtime.settings.FunctionSettings), where set."""
        return {
            name: str(value)
            for name, value in (
                ("IMAGE_QUOTA_PER_DAY", self.image_quota_per_day),
                ("IMAGES_IN_FLIGHT", self.images_in_flight),
                ("TENANT_IMAGE_QUOTAS", self.tenant_image_quotas),
            )
            if value is not None
        }

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


def _convert(name: str, annotation: str, raw: Any) -> Any:
    try:
        if "int" in annotation:
            return int(raw)
        if "float" in annotation:
            return float(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{_camel(name)} must be a number, not {raw!r}") from exc
    return str(raw)
