"""Every environment variable a function reads (FunctionSettings), typed and validated once, at cold start.

The defaults are the domain's own (ips.shared.context.Settings, CsvLimits, ImageLimits, RetryPolicy, ImageQuota,
OutboundPolicy): this model names them, it does not repeat them. It builds the plain domain types the use cases
and adapters take (`domain()`, `outbound_policy()`), so neither `ips` nor its adapters parse the environment.

A secret may be given as itself (`WEBHOOK_SECRET`, `MONGODB_URI`: the local cloud, tests) or, in AWS, by the
ARN of the Secrets Manager secret that holds it (`WEBHOOK_SECRET_SECRET_ARN`, `MONGODB_URI_SECRET_ARN`)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from ips.processing.polite import DEFAULT_PER_HOST
from ips.shared.context import PRESIGNED_CSV_LIMITS, RetryPolicy, Settings
from ips.shared.csv_input import CsvLimits
from ips.shared.imaging import ImageLimits
from ips.shared.quotas import ImageQuota
from ips_adapters.outbound.policy import DEFAULT_CONTACT_URL, DEFAULT_USER_AGENT, OutboundPolicy, parse_origin
from ips_runtime.env_settings import EnvSettings, SettingsError

Count = Annotated[int, Field(ge=1)]
MONGODB_SCHEMES = ("mongodb://", "mongodb+srv://")
# Connections per execution environment: one invocation at a time, whose threads that reach MongoDB are the
# process function's 4 finishing threads (ips.processing.service.STORE_IN_FLIGHT) and the handler's own. pymongo's
# default is 100: a burst of 20 process containers could open 2,000 against Atlas's limit (1,500 on an M10).
MONGODB_MAX_POOL_SIZE = 5
Seconds = Annotated[float, Field(ge=0)]
Timeout = Annotated[float, Field(gt=0)]


class TenantImageLimits(BaseModel):
    """One API key's own image limits in TENANT_IMAGE_QUOTAS; a missing one is every key's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    perDay: Count | None = None  # the JSON's (and the stack parameter's) spelling
    inFlight: Count | None = None


class FunctionSettings(EnvSettings):
    # -- resources (the stack, or the local cloud, names them)
    asset_base_url: str  # where processed objects are publicly readable: CloudFront in AWS, the gateway locally
    uploads_bucket: str
    processed_bucket: str
    images_queue_url: str
    chunks_queue_url: str  # the fan-out's: intake sends chunks, expand re-queues them, the reconciler re-plans
    webhooks_queue_url: str  # wake-ups of webhook deliveries: notify and the reconciler send, webhook sends on
    requests_table: str
    dead_letter_queue_urls: Annotated[tuple[str, ...], NoDecode] = ()  # comma separated; the reconciler's only
    ingest_failures_queue_url: str | None = None  # ingestions that failed every try; the reconciler's only
    mongodb_uri: str | None = None
    mongodb_uri_secret_arn: str | None = None
    mongodb_database: str = "ips"
    # uri: the credentials, if any, are in the URI (the local cloud; a password kept in Secrets Manager); iam:
    # MONGODB-AWS, the function's IAM role (the stack's default), the URI carrying no user or password.
    mongodb_auth: Literal["uri", "iam"] = "uri"
    mongodb_max_pool_size: Count = MONGODB_MAX_POOL_SIZE
    web_origin: str | None = None  # the upload page's origin: the API's CORS headers allow it
    ips_adapter_hook: str | None = None  # local cloud only: `module:function` wrapping the adapters (chaos)

    # -- requests and images
    csv_max_bytes: Count = CsvLimits.max_bytes  # the direct upload (the CSV is the request body)
    csv_max_rows: Count = CsvLimits.max_rows
    csv_max_urls_per_row: Count = CsvLimits.max_urls_per_row  # both routes
    presigned_csv_max_bytes: Count = PRESIGNED_CSV_LIMITS.max_bytes  # the presigned upload (streamed from S3)
    presigned_csv_max_rows: Count = PRESIGNED_CSV_LIMITS.max_rows
    upload_expiry_seconds: Annotated[int, Field(ge=0)] = Settings.upload_expiry_s
    output_url_expiry_seconds: Annotated[int, Field(ge=0)] = Settings.output_url_expiry_s
    # Images per fan-out chunk: one chunk's expansion fits an expand invocation (whole rows; a bigger row alone).
    chunk_images: Count = Settings.chunk_images
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = Settings.jpeg_quality
    image_max_bytes: Count = ImageLimits.max_bytes  # also where a download stops reading (TOO_LARGE)
    image_max_pixels: Count = ImageLimits.max_pixels
    image_max_decode_seconds: Timeout = ImageLimits.max_decode_seconds
    image_max_encode_seconds: Timeout = ImageLimits.max_encode_seconds  # an encode's estimate (TOO_COSTLY past it)
    image_reuse: bool = True  # off: every image is fetched and compressed afresh
    image_quota_per_day: Count = ImageQuota.per_day
    images_in_flight: Count = ImageQuota.in_flight
    image_quota_work_seconds: Timeout = Settings.quota_work_unit_s  # estimated encode seconds one image counts for
    # JSON by API key id: {"<id>": {"perDay": n, "inFlight": m}} (the local cloud writes it from IMAGE_QUOTAS).
    tenant_image_quotas: Annotated[dict[str, TenantImageLimits], NoDecode] = Field(default_factory=dict)
    max_receive_count: Count = Settings.max_receive_count
    dead_letter_redrives: Annotated[int, Field(ge=0)] = Settings.dead_letter_redrives
    status_page_max_bytes: Count = Settings.status_page_max_bytes
    output_retention_days: Annotated[float, Field(gt=0)] = Settings.output_retention_days
    request_deadline_seconds: Seconds = Settings.deadline_base_s
    request_deadline_per_image_seconds: Seconds = Settings.deadline_per_image_s
    stall_after_seconds: Seconds = Settings.stall_after_s
    upload_grace_seconds: Seconds = Settings.upload_grace_s
    reconcile_lease_seconds: Timeout = Settings.reconcile_lease_s  # the topology sets the function's timeout
    reconcile_interval_seconds: Timeout = Settings.reconcile_interval_s  # the schedule's (the topology sets it)

    # -- webhooks
    webhook_secret: str | None = None  # the master whsec_... each tenant's signing secret is derived from
    webhook_secret_secret_arn: str | None = None
    webhook_rotation_window_seconds: Annotated[int, Field(ge=0)] = Settings.webhook_rotation_window_s
    webhook_attempts: Count = RetryPolicy.attempts
    webhook_first_delay: Seconds = RetryPolicy.first_delay
    webhook_timeout_seconds: Timeout = Settings.webhook_timeout_s
    webhook_lease_seconds: Count = Settings.webhook_lease_seconds
    webhook_resend_window_seconds: Seconds = Settings.webhook_resend_window_s

    # -- outbound HTTP (image downloads and webhook deliveries)
    outbound_allowlist: Annotated[frozenset[tuple[str, int]], NoDecode] = OutboundPolicy.allowlist
    outbound_max_redirects: Annotated[int, Field(ge=0)] = OutboundPolicy.max_redirects
    outbound_connect_timeout: Timeout = OutboundPolicy.connect_timeout
    outbound_read_timeout: Timeout = OutboundPolicy.read_timeout
    outbound_total_timeout: Timeout = OutboundPolicy.total_timeout
    fetch_user_agent: str = DEFAULT_USER_AGENT
    fetch_contact_url: str = DEFAULT_CONTACT_URL
    fetch_per_host: Count = DEFAULT_PER_HOST  # downloads in flight per source host, per process

    @field_validator("dead_letter_queue_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(url.strip() for url in value.split(",") if url.strip()) if isinstance(value, str) else value

    @field_validator("tenant_image_quotas", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from None

    @field_validator("outbound_allowlist", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """host:port, comma separated: `127.0.0.1:8080,localhost:9000,[::1]:8443`."""
        if isinstance(value, str):
            return frozenset(parse_origin(item.strip()) for item in value.split(",") if item.strip())
        return value

    def domain(self) -> Settings:
        """The use cases' settings (the webhook secret fetched from Secrets Manager when given by ARN)."""
        default_quota = ImageQuota(per_day=self.image_quota_per_day, in_flight=self.images_in_flight)
        return Settings(
            asset_base_url=self.asset_base_url,
            image_quota=default_quota,
            quota_work_unit_s=self.image_quota_work_seconds,
            tenant_image_quotas={
                tenant: ImageQuota(
                    per_day=limits.perDay or default_quota.per_day, in_flight=limits.inFlight or default_quota.in_flight
                )
                for tenant, limits in self.tenant_image_quotas.items()
            },
            webhook_secret=resolve_secret(self.webhook_secret, self.webhook_secret_secret_arn),
            webhook_rotation_window_s=self.webhook_rotation_window_seconds,
            jpeg_quality=self.jpeg_quality,
            csv_limits=CsvLimits(
                max_bytes=self.csv_max_bytes, max_rows=self.csv_max_rows, max_urls_per_row=self.csv_max_urls_per_row
            ),
            presigned_csv_limits=CsvLimits(
                max_bytes=self.presigned_csv_max_bytes,
                max_rows=self.presigned_csv_max_rows,
                max_urls_per_row=self.csv_max_urls_per_row,
            ),
            upload_expiry_s=self.upload_expiry_seconds,
            output_url_expiry_s=self.output_url_expiry_seconds,
            chunk_images=self.chunk_images,
            image_limits=ImageLimits(
                max_bytes=self.image_max_bytes,
                max_pixels=self.image_max_pixels,
                max_decode_seconds=self.image_max_decode_seconds,
                max_encode_seconds=self.image_max_encode_seconds,
            ),
            max_receive_count=self.max_receive_count,
            dead_letter_redrives=self.dead_letter_redrives,
            status_page_max_bytes=self.status_page_max_bytes,
            webhook_retry=RetryPolicy(attempts=self.webhook_attempts, first_delay=self.webhook_first_delay),
            webhook_timeout_s=self.webhook_timeout_seconds,
            output_retention_days=self.output_retention_days,
            webhook_lease_seconds=self.webhook_lease_seconds,
            deadline_base_s=self.request_deadline_seconds,
            deadline_per_image_s=self.request_deadline_per_image_seconds,
            stall_after_s=self.stall_after_seconds,
            upload_grace_s=self.upload_grace_seconds,
            webhook_resend_window_s=self.webhook_resend_window_seconds,
            reconcile_lease_s=self.reconcile_lease_seconds,
            reconcile_interval_s=self.reconcile_interval_seconds,
        )

    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy(
            allowlist=self.outbound_allowlist,
            max_redirects=self.outbound_max_redirects,
            connect_timeout=self.outbound_connect_timeout,
            read_timeout=self.outbound_read_timeout,
            total_timeout=self.outbound_total_timeout,
            # Fetches stop reading at the image byte cap: a bigger body fails as TOO_LARGE without being held.
            max_bytes=self.image_max_bytes,
            user_agent=f"{self.fetch_user_agent} (+{self.fetch_contact_url})",
        )

    def mongodb_connection_uri(self, *, fresh: bool = False) -> str:
        """Checked by the functions that connect (a function that does not need MongoDB need not name it);
        `fresh`: read from Secrets Manager again, not from the cache (credentials were refused)."""
        uri = resolve_secret(self.mongodb_uri, self.mongodb_uri_secret_arn, fresh=fresh)
        if not uri:
            raise SettingsError("MONGODB_URI (or MONGODB_URI_SECRET_ARN) must be set")
        where = (
            "MONGODB_URI" if self.mongodb_uri else f"the secret MONGODB_URI_SECRET_ARN={self.mongodb_uri_secret_arn}"
        )
        if not uri.startswith(MONGODB_SCHEMES):
            # The stack creates the secret with a random placeholder; the value itself is never quoted.
            raise SettingsError(
                f"{where} holds no MongoDB connection string (the stack's random placeholder until the Atlas URI "
                "is put there): aws secretsmanager put-secret-value --secret-id <that ARN> --secret-string "
                "'mongodb+srv://...' (docs/deployment.md)"
            )
        if self.mongodb_auth == "iam" and (urlsplit(uri).username or urlsplit(uri).password):
            raise SettingsError(
                f"{where} carries a user or password, but MONGODB_AUTH=iam authenticates with the function's IAM "
                "role: store the URI without credentials, or deploy with mongodbAuth=uri"
            )
        return uri


def resolve_secret(value: str | None, arn: str | None, *, fresh: bool = False) -> str | None:
    """The value given, or the Secrets Manager secret `arn` names (cached by powertools for 5 minutes; `fresh`:
    fetched again)."""
    if value or not arn:
        return value
    from aws_lambda_powertools.utilities.parameters import get_secret

    return str(get_secret(arn, max_age=300, force_fetch=fresh))
