"""The local cloud's settings: what `make up` / `make demo` read from the environment (LocalCloudSettings), and
the plain configuration the local cloud runs with (LocalCloudConfig: the bench builds one directly).

API keys (`key` or `key:rate:burst`) and a key's image limits (`key:perDay:inFlight`) are parsed here, once,
into ApiKey and KeyImageQuota: the gateway, the demo and the console take those."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from ips_runtime.env_settings import EnvSettings

DEFAULT_STATE_DIR = Path(".local/state")

Port = Annotated[int, Field(ge=0, le=65_535)]  # 0: any free port
Count = Annotated[int, Field(ge=1)]


@dataclass(frozen=True)
class ApiKey:
    key: str
    rate: float | None = None  # its own usage plan ("key:rate:burst"); the gateway's when None
    burst: int | None = None

    @classmethod
    def parse(cls, entry: str) -> ApiKey:
        if ":" not in entry:
            return cls(entry)
        key, rate, burst = _split(entry, "key:rate:burst")
        try:
            return cls(key, float(rate), int(burst))
        except ValueError:
            raise ValueError(f"{entry!r}: rate and burst must be numbers (key:rate:burst)") from None


@dataclass(frozen=True)
class KeyImageQuota:
    key: str  # may itself hold ':' (the limits are the last two fields)
    per_day: int
    in_flight: int

    @classmethod
    def parse(cls, entry: str) -> KeyImageQuota:
        key, per_day, in_flight = _split(entry, "key:perDay:inFlight")
        try:
            return cls(key, int(per_day), int(in_flight))
        except ValueError:
            raise ValueError(f"{entry!r}: perDay and inFlight must be whole numbers (key:perDay:inFlight)") from None


def _split(entry: str, shape: str) -> tuple[str, str, str]:
    parts = entry.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{entry!r} must look like {shape}")
    return parts[0], parts[1], parts[2]


@dataclass
class LocalCloudConfig:
    gateway_port: int = 5000
    aws_port: int = 4566
    mongo_port: int | None = None  # a free port when None
    state_dir: Path = DEFAULT_STATE_DIR
    api_keys: list[ApiKey] = field(default_factory=lambda: [ApiKey("local-dev-key")])
    image_quotas: list[KeyImageQuota] = field(default_factory=list)  # some keys' own image limits
    # Concurrent process-function invocations: twice the cores, so one invocation's waits on S3, DynamoDB and
    # MongoDB overlap another's compression (as Lambda's concurrency does).
    workers: int = 2 * (os.cpu_count() or 1)
    # Execution environments (processes) each other function may have at once: concurrent API calls beyond it
    # wait for one to be free.
    environments: int = 4
    visibility_timeout_s: int | None = None  # the topology's when None; shorter makes local retries quicker
    throttle_rate: float | None = None  # the usage plan's when None
    throttle_burst: int | None = None
    upload_retention_days: int | None = None  # S3 lifecycle expiry; the topology's when None
    processed_retention_days: int | None = None
    aws_endpoint_url: str | None = None  # use an emulator that is already running (DynamoDB included)
    mongodb_uri: str | None = None  # use a MongoDB that is already running
    # "module:function" each execution environment calls with its handler module once imported (the bench's
    # step timing), and where the functions' stdout goes (inherited when None).
    environment_setup: str | None = None
    # Further variables of this process every execution environment is given as they are: an instrument's own
    # (the set-up hook's, IPS_ADAPTER_HOOK's), which no settings model reads. The rest of the shell reaches none.
    passthrough: tuple[str, ...] = ()
    persist_aws: bool = True  # keep S3, SQS and DynamoDB in the state folder across restarts
    function_stdout: Path | None = None
    reconcile_interval_s: float | None = None  # the topology's schedule when None
    webhook_secret: str | None = None  # the master signing secret; one generated per state folder when None
    # Given to the functions' powertools: metrics are EMF lines on stdout in Lambda, locally only clutter.
    metrics_disabled: bool = True
    log_level: str = "WARNING"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalCloudConfig:
        return LocalCloudSettings.from_env(env).config()


class LocalCloudSettings(EnvSettings):
    gateway_port: Port = LocalCloudConfig.gateway_port
    aws_port: Port = LocalCloudConfig.aws_port
    mongo_port: Port | None = None
    local_state_dir: Path = DEFAULT_STATE_DIR
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=lambda: [ApiKey("local-dev-key")])
    image_quotas: Annotated[list[KeyImageQuota], NoDecode] = Field(default_factory=list)
    local_workers: Count = LocalCloudConfig.workers
    local_environments: Count = LocalCloudConfig.environments
    local_visibility_timeout: Annotated[int, Field(ge=0)] | None = None
    throttle_rate: Annotated[float, Field(gt=0)] | None = None
    throttle_burst: Count | None = None
    upload_retention_days: Count | None = None
    processed_retention_days: Count | None = None
    aws_endpoint_url: str | None = None
    mongodb_uri: str | None = None
    local_reconcile_seconds: Annotated[float, Field(gt=0)] | None = None
    webhook_secret: str | None = None
    local_passthrough: Annotated[tuple[str, ...], NoDecode] = ()
    powertools_metrics_disabled: bool = LocalCloudConfig.metrics_disabled
    powertools_log_level: str = LocalCloudConfig.log_level

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: Any) -> Any:
        """Comma separated, each `key` (the usage plan's throttle) or `key:rate:burst` (its own)."""
        return [ApiKey.parse(entry) for entry in _entries(value)] if isinstance(value, str) else value

    @field_validator("image_quotas", mode="before")
    @classmethod
    def _image_quotas(cls, value: Any) -> Any:
        """Comma separated `key:perDay:inFlight`."""
        return [KeyImageQuota.parse(entry) for entry in _entries(value)] if isinstance(value, str) else value

    @field_validator("local_passthrough", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """Comma separated variable names."""
        return tuple(_entries(value)) if isinstance(value, str) else value

    def config(self) -> LocalCloudConfig:
        return LocalCloudConfig(
            gateway_port=self.gateway_port,
            aws_port=self.aws_port,
            mongo_port=self.mongo_port,
            state_dir=self.local_state_dir,
            api_keys=list(self.api_keys),
            image_quotas=list(self.image_quotas),
            workers=self.local_workers,
            environments=self.local_environments,
            visibility_timeout_s=self.local_visibility_timeout,
            throttle_rate=self.throttle_rate,
            throttle_burst=self.throttle_burst,
            upload_retention_days=self.upload_retention_days,
            processed_retention_days=self.processed_retention_days,
            aws_endpoint_url=self.aws_endpoint_url,
            mongodb_uri=self.mongodb_uri,
            reconcile_interval_s=self.local_reconcile_seconds,
            webhook_secret=self.webhook_secret,
            passthrough=self.local_passthrough,
            metrics_disabled=self.powertools_metrics_disabled,
            log_level=self.powertools_log_level,
        )


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]
